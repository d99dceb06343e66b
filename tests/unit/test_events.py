"""The 2030.5 event lifecycle as a table: events × now → EventStatus, listed or not.

Rule quoted in each case; times are small integers for reading ease (seconds)."""

from __future__ import annotations

import pytest

from server.sep2.events import TRANSITIONS, Event, Status, list_order, state, states

W = frozenset({"opModFixedW"})
WV = frozenset({"opModFixedW", "opModTargetVar"})
DEV = frozenset({"dev-1"})


def ev(mrid: str = "A", *, created: int = 0, start: int = 100, duration: int = 100, program: str = "P",
       controls: frozenset[str] = W, targets: frozenset[str] = DEV, cancelled_at: int | None = None,
       randomized: bool = False) -> Event:
    return Event(mrid, program, created, start, duration, controls, targets, cancelled_at, randomized)


S, A, C, CR, SUP = Status.SCHEDULED, Status.ACTIVE, Status.CANCELLED, Status.CANCELLED_RANDOMIZED, Status.SUPERSEDED

# (case, event, now, expected (status, dateTime, listed))
ALONE = [
    ("scheduled before its start", ev(created=5), 50, (S, 5, True)),
    ("active from its start (inclusive)", ev(), 100, (A, 100, True)),
    ("active until just before its end", ev(), 199, (A, 100, True)),
    ("no 'completed': it drops out at its end", ev(), 200, (None, None, False)),
    ("cancelled before start: status 2 at the cancellation", ev(cancelled_at=60), 70, (C, 60, True)),
    ("cancelled: kept in the list for the original duration", ev(cancelled_at=60), 199, (C, 60, True)),
    ("cancelled: gone after the original end", ev(cancelled_at=60), 200, (None, None, False)),
    ("cancelled while active", ev(cancelled_at=150), 160, (C, 150, True)),
    ("active until the cancellation moment", ev(cancelled_at=150), 149, (A, 100, True)),
    ("cancelled with randomization is status 3", ev(cancelled_at=60, randomized=True), 120, (CR, 60, True)),
    ("cancelled exactly at the start never became active", ev(cancelled_at=100), 100, (C, 100, True)),
    ("a cancellation after the end changes nothing", ev(cancelled_at=250), 199, (A, 100, True)),
    ("zero duration: never listed once started", ev(duration=0), 100, (None, None, False)),
]


@pytest.mark.parametrize(("case", "event", "now", "expected"), ALONE, ids=[c[0] for c in ALONE])
def test_single_event(case: str, event: Event, now: int, expected: tuple) -> None:
    got = state(event, now)
    assert got.listed == expected[2]
    if got.listed:
        assert (got.status, got.date_time) == expected[:2]
        assert not got.potentially_superseded


OLD = ev("A", created=0, start=100, duration=100)
PAIRS = [
    ("same program, overlapping, same controls and targets: superseded at the newer's start",
     OLD, ev("B", created=10, start=150, duration=100), 160, (SUP, 150, False)),
    ("...but active until then", OLD, ev("B", created=10, start=150), 149, (A, 100, False)),
    ("...and scheduled until its own start even if already superseded later",
     OLD, ev("B", created=10, start=150), 99, (S, 0, False)),
    ("newer starting first supersedes a still-scheduled event",
     OLD, ev("B", created=10, start=50, duration=100), 60, (SUP, 50, False)),
    ("a newer event that sets more controls still supersedes",
     OLD, ev("B", created=10, start=100, controls=WV), 100, (SUP, 100, False)),
    ("different program: not superseded (the client resolves by primacy)",
     OLD, ev("B", created=10, start=100, program="Q"), 120, (A, 100, False)),
    ("no time overlap: not superseded", OLD, ev("B", created=10, start=200), 150, (A, 100, False)),
    ("an OLDER overlapping event does not supersede a newer one",
     ev("A", created=10), ev("B", created=0, start=120), 150, (A, 100, False)),
    ("other targets: untouched", OLD, ev("B", created=10, targets=frozenset({"dev-2"})), 150, (A, 100, False)),
    ("overlapping targets only: potentially superseded, from the newer's creation",
     OLD, ev("B", created=10, targets=frozenset({"dev-1", "dev-2"})), 150, (A, 100, True)),
    ("fewer controls: potentially superseded",
     ev("A", controls=WV), ev("B", created=10, controls=W), 150, (A, 100, True)),
    ("a newer event cancelled before it began supersedes nothing",
     OLD, ev("B", created=10, start=150, cancelled_at=120), 160, (A, 100, False)),
    ("a newer event cancelled after it began had superseded: that stands",
     OLD, ev("B", created=10, start=150, cancelled_at=170), 180, (SUP, 150, False)),
    ("cancelled first, superseded later: stays cancelled",
     ev("A", cancelled_at=120), ev("B", created=10, start=150), 160, (C, 120, False)),
    ("superseded first, cancelled later: stays superseded",
     ev("A", cancelled_at=170), ev("B", created=10, start=150), 180, (SUP, 150, False)),
    ("superseded events stay listed until their own end", OLD, ev("B", created=10, start=150), 199, (SUP, 150, False)),
    ("...and drop out at it", OLD, ev("B", created=10, start=150), 200, (None, None, False)),
    ("a newer event published after its start supersedes from its creation",
     OLD, ev("B", created=130, start=110), 140, (SUP, 130, False)),
    ("a newer event not yet created does nothing", OLD, ev("B", created=130, start=110), 125, (A, 100, False)),
]


@pytest.mark.parametrize(("case", "older", "newer", "now", "expected"), PAIRS, ids=[c[0] for c in PAIRS])
def test_pairs(case: str, older: Event, newer: Event, now: int, expected: tuple) -> None:
    got = states([newer, older], now)[older.mrid]
    assert got.listed == (expected[0] is not None)
    if got.listed:
        assert (got.status, got.date_time, got.potentially_superseded) == expected
        if got.potentially_superseded:
            assert got.potentially_superseded_time == newer.creation_time


def test_chain_of_supersessions() -> None:
    a, b, c = ev("A", created=0), ev("B", created=1, start=120), ev("C", created=2, start=140)
    got = states([a, b, c], 150)
    assert (got["A"].status, got["A"].date_time) == (SUP, 120)
    assert (got["B"].status, got["B"].date_time) == (SUP, 140)
    assert (got["C"].status, got["C"].date_time) == (A, 140)


def test_ties_in_creation_time_break_by_mrid() -> None:
    a, b = ev("A", created=5), ev("B", created=5)
    got = states([a, b], 150)
    assert got["A"].status == SUP and got["B"].status == A


def test_terminal_states_accept_nothing_but_their_end() -> None:
    from server.sep2.events import _State, _Trigger

    for terminal in (_State.CANCELLED, _State.CANCELLED_RANDOMIZED, _State.SUPERSEDED):
        for trigger in _Trigger:
            nxt = TRANSITIONS.get((terminal, trigger), terminal)
            assert nxt == (_State.ENDED if trigger is _Trigger.END else terminal)


def test_list_order_is_start_then_newest_then_mrid_descending() -> None:
    events = [ev("A", created=1, start=200), ev("B", created=1, start=100), ev("C", created=2, start=100),
              ev("D", created=2, start=100)]
    assert [e.mrid for e in sorted(events, key=list_order)] == ["D", "C", "B", "A"]


def test_deterministic_for_any_input_order() -> None:
    import itertools

    events = [OLD, ev("B", created=10, start=150), ev("C", created=20, start=170, program="Q"),
              ev("D", created=30, targets=frozenset({"dev-1", "dev-9"}))]
    results = {tuple(sorted(states(list(p), 175).items())) for p in itertools.permutations(events)}
    assert len(results) == 1


@pytest.mark.parametrize(
    ("event", "now", "expected"),
    [
        (ev(), 200, (A, 100, True)),  # ended, still listed with the status it ended with
        (ev(), 204, (A, 100, True)),
        (ev(), 205, (None, None, False)),  # the grace is over
        (ev(cancelled_at=60), 203, (C, 60, True)),
        (ev(duration=0), 100, (None, None, False)),  # a zero-length event was never listed
    ],
)
def test_grace_after_the_end(event: Event, now: int, expected: tuple) -> None:
    """A client whose clock runs a little behind must not find its running event gone."""
    got = state(event, now, grace=5)
    assert got.listed == expected[2]
    if got.listed:
        assert (got.status, got.date_time) == expected[:2]
