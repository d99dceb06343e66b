"""mRIDs follow their making: a later event's mRID is the greater one, so two events created in the
same second (equal creationTime) still supersede in the order they were made — as the CSIP-AUS
harness expects when an operator sends energize-true then energize-false within one second."""

from __future__ import annotations

from server.sep2 import events
from server.sep2.identity import new_mrid, new_mrids


def test_mrids_increase_and_keep_the_pen() -> None:
    made = [new_mrid(40732) for _ in range(200)] + new_mrids(500, 40732) + [new_mrid(40732)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(m) == 32 and m.endswith(f"{40732:08X}") and m == m.upper() for m in made)


def test_the_later_of_two_events_made_in_one_second_supersedes_the_earlier() -> None:
    first, second = new_mrid(), new_mrid()
    mk = lambda mrid: events.Event(mrid=mrid, program="1", creation_time=100, start=100, duration=60,  # noqa: E731
                                   controls=frozenset({"opModEnergize"}), targets=frozenset({"7"}))
    states = events.states([mk(second), mk(first)], 110)
    assert states[first].status is events.Status.SUPERSEDED
    assert states[second].status is events.Status.ACTIVE
