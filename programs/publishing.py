"""The lifecycle of one peak window's publishing, as an explicit state table (pure; `now` given).

    planned ──publish──▶ published ──republish──▶ published
       │                    │
       ├──miss──▶ missed    └──cancel──▶ cancelled
       └──cancel──▶ cancelled

Rules (`decide` implements them; the scheduler and the operator call it, never their own ifs):

* A planned window is published once its publishing time (window start − lead time) has come, and
  late — with its original interval — while it has not ended (the server may have been down).
  A window that ended before anybody published it is recorded as missed, never published.
* A published window is cleared again (a new revision, whose controls supersede the previous
  ones) when what its clearing saw has changed — an enrollment, a curve, the program, a grid node —
  but only before the window starts: once devices act on a control it is not moved under them.
* Cancelling a planned or published window is allowed until it ends; its events are cancelled,
  never deleted. Missed and cancelled are final.

Callers ask the table (`can`, `is_open`, `is_published`) rather than compare state names.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["WindowState", "Action", "OPEN_STATES", "TRANSITIONS", "WindowError", "can", "decide", "is_open",
           "is_published", "transition"]


class WindowState(StrEnum):
    PLANNED = "planned"
    PUBLISHED = "published"
    MISSED = "missed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    PUBLISH = "publish"
    REPUBLISH = "republish"
    MISS = "miss"
    CANCEL = "cancel"


class WindowError(ValueError):
    """An action that the window's state does not allow."""


TRANSITIONS: dict[tuple[WindowState, Action], WindowState] = {
    (WindowState.PLANNED, Action.PUBLISH): WindowState.PUBLISHED,
    (WindowState.PLANNED, Action.MISS): WindowState.MISSED,
    (WindowState.PLANNED, Action.CANCEL): WindowState.CANCELLED,
    (WindowState.PUBLISHED, Action.REPUBLISH): WindowState.PUBLISHED,
    (WindowState.PUBLISHED, Action.CANCEL): WindowState.CANCELLED,
}


OPEN_STATES = frozenset(s for s, a in TRANSITIONS if a is Action.CANCEL)


def can(state: str, action: str) -> bool:
    """Whether the table allows `action` in `state` (an unknown name raises ValueError)."""
    return (WindowState(state), Action(action)) in TRANSITIONS


def is_open(state: str) -> bool:
    """Planned or published: the window is still to happen (and may be cancelled until it ends)."""
    return WindowState(state) in OPEN_STATES


def is_published(state: str) -> bool:
    """Its controls are out (and not cancelled): what a device can opt out of."""
    return WindowState(state) is WindowState.PUBLISHED


def transition(state: str, action: str) -> WindowState:
    """The state after `action`, or WindowError naming what is allowed from `state`."""
    key = (WindowState(state), Action(action))
    if key not in TRANSITIONS:
        allowed = sorted(a.value for s, a in TRANSITIONS if s == key[0]) or ["nothing (final)"]
        raise WindowError(f"a {state} window cannot {action}; it allows: {', '.join(allowed)}")
    return TRANSITIONS[key]


def decide(state: str, *, now: int, publish_at: int, start: int, end: int, inputs_changed: bool) -> Action | None:
    """What the scheduler should do with a window at `now` (UTC seconds), or None for nothing yet."""
    s = WindowState(state)
    if s is WindowState.PLANNED:
        if now >= end:
            return Action.MISS
        return Action.PUBLISH if now >= publish_at else None
    if s is WindowState.PUBLISHED:
        return Action.REPUBLISH if inputs_changed and now < start else None
    return None
