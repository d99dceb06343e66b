"""programs.enrollment: the enrollment state table and the Enrollment record."""

from __future__ import annotations

import itertools

import pytest

from programs.enrollment import TRANSITIONS, Enrollment, EnrollmentError, Event, State, participates, transition
from programs.kinds import DeviceKind

# The documented table, written out independently of the module.
EXPECTED = {
    ("pending", "confirm"): "active",
    ("pending", "cancel"): "cancelled",
    ("pending", "end"): "ended",
    ("active", "pause"): "paused",
    ("active", "cancel"): "cancelled",
    ("active", "end"): "ended",
    ("paused", "resume"): "active",
    ("paused", "cancel"): "cancelled",
    ("paused", "end"): "ended",
}


def test_transition_table_is_the_documented_one():
    assert {(s.value, e.value): t.value for (s, e), t in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("state, event", list(itertools.product([s.value for s in State], [e.value for e in Event])))
def test_every_state_event_pair_follows_the_table(state, event):
    if (state, event) in EXPECTED:
        assert transition(state, event) == State(EXPECTED[(state, event)])
    else:
        with pytest.raises(EnrollmentError, match=f"cannot {event} an enrollment that is {state}"):
            transition(state, event)


@pytest.mark.parametrize("state", ["cancelled", "ended"])
def test_terminal_states_accept_nothing(state):
    """cancelled and ended are terminal: they accept no event."""
    for event in Event:
        with pytest.raises(EnrollmentError, match="it is closed and accepts no events"):
            transition(state, event)


def test_repeated_event_is_an_error_that_lists_what_is_allowed():
    with pytest.raises(EnrollmentError) as e:
        transition(State.PAUSED, Event.PAUSE)
    assert str(e.value) == "cannot pause an enrollment that is paused (allowed: resume, cancel, end)"
    assert isinstance(e.value, ValueError)


def test_unknown_state_and_event_are_named():
    with pytest.raises(EnrollmentError, match="unknown enrollment state 'suspended'"):
        transition("suspended", "resume")
    with pytest.raises(EnrollmentError, match="unknown enrollment event 'activate' .known: confirm, pause"):
        transition("pending", "activate")


def test_only_active_participates():
    assert [s.value for s in State if participates(s)] == ["active"]
    with pytest.raises(EnrollmentError):
        participates("gone")


# --- the record ------------------------------------------------------------------------------------
def test_enrollment_defaults_to_pending_with_the_default_curve():
    e = Enrollment("cust-1", "battery")  # type: ignore[arg-type]
    assert e.device_kind is DeviceKind.BATTERY
    assert e.state is State.PENDING
    assert e.curve_source == "default"
    assert not e.participates


def test_enrollment_life_cycle_through_apply():
    e = Enrollment("cust-1", DeviceKind.LOAD)
    e = e.apply("confirm")
    assert e.state is State.ACTIVE and e.participates
    e = e.apply(Event.PAUSE).apply("resume").apply("end")
    assert e.state is State.ENDED
    with pytest.raises(EnrollmentError, match="cannot resume an enrollment that is ended"):
        e.apply("resume")


def test_power_curve_source_is_checked_and_stored_as_tuples():
    e = Enrollment("c", DeviceKind.EV_CHARGER, power_curve=[{"price": 0.08, "powerKW": -11}, (0.10, -5)])  # type: ignore[arg-type]
    assert e.power_curve == ((0.08, -11.0), (0.10, -5.0))
    assert e.curve_source == "power_curve"


def test_objectives_source_is_checked():
    e = Enrollment("c", DeviceKind.LOAD, objectives={"reduceKW": 5, "minPricePerKWh": 0.15})
    assert e.curve_source == "objectives"
    with pytest.raises(EnrollmentError, match="enrollment of 'c': invalid objective: objective.minPricePerKWh: required"):
        Enrollment("c", DeviceKind.LOAD, objectives={"reduceKW": 5})


@pytest.mark.parametrize("kwargs, expected", [
    (dict(customer=""), "enrollment customer must be a non-blank text"),
    (dict(device_kind="fridge"), "enrollment device_kind 'fridge' is not one of battery, pv, ev_charger, load"),
    (dict(state="asleep"), "unknown enrollment state 'asleep'"),
    (dict(power_curve=[(0.1, -5)], objectives={"reduceKW": 1, "minPricePerKWh": 0}), "not both"),
    (dict(power_curve=[(0.10, -5), (0.08, -11)]), "power curve point 1: price 0.08 after 0.1"),
    (dict(power_curve=[]), "power curve has no points"),
])
def test_enrollment_errors(kwargs, expected):
    args = dict(customer="c", device_kind=DeviceKind.EV_CHARGER) | kwargs
    with pytest.raises(EnrollmentError, match=expected):
        Enrollment(**args)
