"""Enrollments: a customer's device in a program, its curve source, and its life cycle.

State table (every transition that exists; anything else is an EnrollmentError):

    state      event     -> state
    pending    confirm   -> active      the customer or operator confirmed (Beckn confirm)
    pending    cancel    -> cancelled   withdrawn before it started
    pending    end       -> ended       the program (or its term) ended first
    active     pause     -> paused      sits out windows for now (travel, maintenance)
    active     cancel    -> cancelled   the customer left
    active     end       -> ended       the program (or its term) ended
    paused     resume    -> active
    paused     cancel    -> cancelled
    paused     end       -> ended

* `end` applies to every live state, so closing a program is one event for all its enrollments.
* cancelled and ended are terminal: they accept no event (re-enrolling is a new enrollment).
* Repeating an event (pause while paused, confirm while active) is an error, not a no-op, so a
  caller never believes it changed something it did not; check the state first to be idempotent.
* Only `active` participates in clearing (`participates`).
* An enrollment starts pending, or active when confirmed as it is made (`START_STATES`).
* A device is a member of its program's DERProgram while active or paused (`is_member`): a paused
  device sits out clearings but still hears of cancellations.

Callers ask these predicates (`can`, `is_closed`, `is_member`, `participates`) rather than compare
state names themselves.

The curve source is one of: an explicit power curve (Beckn points, see programs.curves), an
objective (programs.curves.parse_objective), or neither (the default curve from the device's
ratings). Both are checked when the Enrollment is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Mapping

from programs.curves import CurveError, parse_objective, parse_power_points
from programs.kinds import DeviceKind

__all__ = ["Enrollment", "EnrollmentError", "Event", "START_STATES", "State", "TRANSITIONS", "can", "is_closed",
           "is_member", "participates", "transition"]


class EnrollmentError(ValueError):
    """An invalid enrollment or a transition the state table does not allow."""


class State(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    ENDED = "ended"


class Event(StrEnum):
    CONFIRM = "confirm"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    END = "end"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.PENDING, Event.CONFIRM): State.ACTIVE,
    (State.PENDING, Event.CANCEL): State.CANCELLED,
    (State.PENDING, Event.END): State.ENDED,
    (State.ACTIVE, Event.PAUSE): State.PAUSED,
    (State.ACTIVE, Event.CANCEL): State.CANCELLED,
    (State.ACTIVE, Event.END): State.ENDED,
    (State.PAUSED, Event.RESUME): State.ACTIVE,
    (State.PAUSED, Event.CANCEL): State.CANCELLED,
    (State.PAUSED, Event.END): State.ENDED,
}
TERMINAL = frozenset({State.CANCELLED, State.ENDED})
START_STATES = frozenset({State.PENDING, State.ACTIVE})


def _state(v: object) -> State:
    try:
        return State(v)
    except ValueError:
        raise EnrollmentError(f"unknown enrollment state {v!r} (known: {', '.join(State)})") from None


def _event(v: object) -> Event:
    try:
        return Event(v)
    except ValueError:
        raise EnrollmentError(f"unknown enrollment event {v!r} (known: {', '.join(Event)})") from None


def transition(state: State | str, event: Event | str) -> State:
    """The state after `event`, or EnrollmentError saying why it is not allowed."""
    s, e = _state(state), _event(event)
    nxt = TRANSITIONS.get((s, e))
    if nxt is not None:
        return nxt
    if s in TERMINAL:
        raise EnrollmentError(f"cannot {e} an enrollment that is {s}: it is closed and accepts no events")
    allowed = ", ".join(ev for (st, ev) in TRANSITIONS if st == s)
    raise EnrollmentError(f"cannot {e} an enrollment that is {s} (allowed: {allowed})")


def can(state: State | str, event: Event | str) -> bool:
    """Whether the table allows `event` in `state` (unknown names raise EnrollmentError)."""
    return (_state(state), _event(event)) in TRANSITIONS


def is_closed(state: State | str) -> bool:
    """Cancelled or ended: the enrollment accepts no event; the device may enroll afresh."""
    return _state(state) in TERMINAL


def is_member(state: State | str) -> bool:
    """Whether the device belongs to the program's DERProgram: active or paused."""
    return _state(state) in (State.ACTIVE, State.PAUSED)


def participates(state: State | str) -> bool:
    """Whether an enrollment in this state offers its curve in clearing (active only)."""
    return _state(state) == State.ACTIVE


@dataclass(frozen=True)
class Enrollment:
    """A customer's device in a program. At most one of power_curve / objectives; neither means
    the default curve from the device's ratings."""

    customer: str
    device_kind: DeviceKind
    power_curve: tuple[tuple[float, float], ...] | None = None
    objectives: Mapping[str, Any] | None = None
    state: State = State.PENDING

    def __post_init__(self) -> None:
        if not isinstance(self.customer, str) or not self.customer.strip():
            raise EnrollmentError(f"enrollment customer must be a non-blank text, got {self.customer!r}")
        try:
            object.__setattr__(self, "device_kind", DeviceKind(self.device_kind))
        except ValueError:
            raise EnrollmentError(f"enrollment device_kind {self.device_kind!r} is not one of "
                                  f"{', '.join(DeviceKind)}") from None
        object.__setattr__(self, "state", _state(self.state))
        if self.power_curve is not None and self.objectives is not None:
            raise EnrollmentError("an enrollment gives a power curve or objectives, not both")
        try:
            if self.power_curve is not None:
                object.__setattr__(self, "power_curve", tuple(parse_power_points(self.power_curve)))
            if self.objectives is not None:
                parse_objective(self.objectives)
        except CurveError as e:
            raise EnrollmentError(f"enrollment of {self.customer!r}: {e}") from None

    @property
    def curve_source(self) -> str:
        """"power_curve", "objectives" or "default"."""
        if self.power_curve is not None:
            return "power_curve"
        return "objectives" if self.objectives is not None else "default"

    @property
    def participates(self) -> bool:
        return participates(self.state)

    def apply(self, event: Event | str) -> "Enrollment":
        """A copy in the state after `event` (EnrollmentError if the table does not allow it)."""
        return replace(self, state=transition(self.state, event))
