"""The 2030.5 event lifecycle (§10.2.3 / §12.1.3 "EventStatus"), computed when read, never stored.

An event's status at `now` is found by folding the moments that concern it — its start, its end,
its cancellation, the start of a newer event that supersedes it — in time order through one
explicit transition table. Nothing ticks: the same inputs and `now` always give the same answer,
which is what lets the server compute EventStatus per request and the simulator replay it.

Rules (IEEE 2030.5-2018, and docs/architecture.md):
- scheduled (0) until the start, active (1) from the start; at the end the event drops out of lists
  (there is no "completed" status) — after a grace of LIST_GRACE_SECONDS, during which it is still
  listed with the status it ended with. A client's clock follows /tm in whole seconds and may run
  a little behind ours: without the grace, a poll in that gap finds its running event gone, and a
  2023-edition client then reports it cancelled (6) instead of completed (3) (docs/interop.md).
- cancelled (2), or cancelled with randomization (3), from the moment of cancellation; a cancelled
  event stays listed until its original end.
- superseded (4) at the effective start of a newer event of the same program that overlaps it in
  time, targets the same devices and sets every control it sets; it stays listed until its end.
- the first of cancellation and supersession wins; later ones change nothing.
- a newer overlapping event of the same program that matches only partly (some controls, some
  targets) sets potentiallySuperseded, with the newer event's creation time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum


LIST_GRACE_SECONDS = 5


class Status(int, Enum):
    SCHEDULED = 0
    ACTIVE = 1
    CANCELLED = 2
    CANCELLED_RANDOMIZED = 3
    SUPERSEDED = 4


class _State(Enum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    CANCELLED_RANDOMIZED = "cancelled with randomization"
    SUPERSEDED = "superseded"
    ENDED = "ended"  # dropped out of every list


class _Trigger(Enum):
    # Declaration order breaks ties between moments at the same second: a cancellation or a
    # supersession at an event's start means it never became active.
    CANCEL = "cancel"
    CANCEL_RANDOMIZED = "cancel with randomization"
    SUPERSEDE = "superseded"
    END = "end"
    START = "start"


_S, _T = _State, _Trigger
_TERMINAL = (_S.CANCELLED, _S.CANCELLED_RANDOMIZED, _S.SUPERSEDED)

# The whole lifecycle. A (state, trigger) pair that is absent leaves the state as it is.
TRANSITIONS: dict[tuple[_State, _Trigger], _State] = {
    (_S.SCHEDULED, _T.START): _S.ACTIVE,
    (_S.SCHEDULED, _T.END): _S.ENDED,
    (_S.ACTIVE, _T.END): _S.ENDED,
    **{(s, _T.CANCEL): _S.CANCELLED for s in (_S.SCHEDULED, _S.ACTIVE)},
    **{(s, _T.CANCEL_RANDOMIZED): _S.CANCELLED_RANDOMIZED for s in (_S.SCHEDULED, _S.ACTIVE)},
    **{(s, _T.SUPERSEDE): _S.SUPERSEDED for s in (_S.SCHEDULED, _S.ACTIVE)},
    **{(s, _T.END): _S.ENDED for s in _TERMINAL},
}

_STATUS = {
    _S.SCHEDULED: Status.SCHEDULED,
    _S.ACTIVE: Status.ACTIVE,
    _S.CANCELLED: Status.CANCELLED,
    _S.CANCELLED_RANDOMIZED: Status.CANCELLED_RANDOMIZED,
    _S.SUPERSEDED: Status.SUPERSEDED,
}


@dataclass(frozen=True, slots=True)
class Event:
    """What the lifecycle needs to know of an event (all times UTC seconds)."""

    mrid: str
    program: str
    creation_time: int
    start: int
    duration: int
    controls: frozenset[str]  # the DERControlBase elements it sets, e.g. {"opModFixedW"}
    targets: frozenset[str]  # the devices (or device categories) it applies to
    cancelled_at: int | None = None
    cancel_randomized: bool = False

    @property
    def end(self) -> int:
        return self.start + self.duration

    def overlaps(self, other: "Event") -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class EventState:
    """An event's EventStatus at one moment, and whether it is still listed then."""

    status: Status
    date_time: int  # when the current status took effect
    potentially_superseded: bool
    potentially_superseded_time: int | None
    listed: bool


def _supersedes(newer: Event, older: Event) -> bool:
    return (
        newer.program == older.program
        and (newer.creation_time, newer.mrid) > (older.creation_time, older.mrid)
        and newer.overlaps(older)
        and newer.targets == older.targets
        and newer.controls >= older.controls
        # a newer event cancelled before it began supersedes nothing
        and (newer.cancelled_at is None or newer.cancelled_at > newer.start)
    )


def _partly_overlaps(newer: Event, older: Event) -> bool:
    return (
        newer.program == older.program
        and (newer.creation_time, newer.mrid) > (older.creation_time, older.mrid)
        and newer.overlaps(older)
        and bool(newer.targets & older.targets)
        and bool(newer.controls & older.controls)
        and newer.cancelled_at is None
        and not _supersedes(newer, older)
    )


def state(event: Event, now: int, others: Iterable[Event] = (), *, grace: int = 0) -> EventState:
    """The event's state at `now`, given the other events of its program (any order); an ended
    event stays listed `grace` seconds with the status it ended with."""
    others = [o for o in others if o.mrid != event.mrid]
    if grace > 0 and event.end <= now < event.end + grace:
        last = state(event, event.end - 1, others) if event.duration > 0 else None
        if last is not None and last.listed:
            return last
    moments: list[tuple[int, _Trigger]] = [(event.start, _T.START), (event.end, _T.END)]
    if event.cancelled_at is not None:
        trigger = _T.CANCEL_RANDOMIZED if event.cancel_randomized else _T.CANCEL
        moments.append((event.cancelled_at, trigger))
    # A newer event supersedes from its effective start, or from its creation if it was
    # published after its own start.
    moments += [(max(o.start, o.creation_time), _T.SUPERSEDE) for o in others if _supersedes(o, event)]
    order = list(_Trigger)
    current, since = _S.SCHEDULED, event.creation_time
    for when, trigger in sorted(moments, key=lambda m: (m[0], order.index(m[1]))):
        if when > now:
            break
        nxt = TRANSITIONS.get((current, trigger), current)
        if nxt is not current:
            current, since = nxt, when
    partly = [o.creation_time for o in others if _partly_overlaps(o, event) and o.creation_time <= now]
    if current is _S.ENDED:
        return EventState(Status.SCHEDULED, since, False, None, listed=False)
    return EventState(
        status=_STATUS[current],
        date_time=since,
        potentially_superseded=bool(partly),
        potentially_superseded_time=max(partly) if partly else None,
        listed=True,
    )


def states(events: Sequence[Event], now: int, *, grace: int = 0) -> dict[str, EventState]:
    """Every event's state at `now`; supersession is looked for within each program only."""
    by_program: dict[str, list[Event]] = {}
    for e in events:
        if e.creation_time <= now:  # an event does not exist before it was created
            by_program.setdefault(e.program, []).append(e)
    return {e.mrid: state(e, now, group, grace=grace) for group in by_program.values() for e in group}


def list_order(event: Event) -> tuple[int, int, str]:
    """DERControlList order: interval.start ascending, creationTime descending, mRID descending."""
    return (event.start, -event.creation_time, _descending(event.mrid))


def _descending(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)
