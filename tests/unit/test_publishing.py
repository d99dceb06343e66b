"""programs.publishing: the window lifecycle table and the scheduler's decisions."""

from __future__ import annotations

import pytest

from programs.publishing import TRANSITIONS, Action, WindowError, WindowState, decide, transition

W = {"publish_at": 100, "start": 200, "end": 300}


def test_a_planned_window_waits_until_its_publishing_time() -> None:
    assert decide("planned", now=99, inputs_changed=False, **W) is None
    assert decide("planned", now=100, inputs_changed=False, **W) is Action.PUBLISH


def test_a_window_missed_while_down_is_published_late_if_it_has_not_ended() -> None:
    """Issue #4: 'a window missed while the server was down is published late if it has not ended,
    otherwise recorded as missed'."""
    assert decide("planned", now=250, inputs_changed=False, **W) is Action.PUBLISH
    assert decide("planned", now=300, inputs_changed=False, **W) is Action.MISS


def test_changed_inputs_republish_only_before_the_window_starts() -> None:
    assert decide("published", now=150, inputs_changed=True, **W) is Action.REPUBLISH
    assert decide("published", now=150, inputs_changed=False, **W) is None
    assert decide("published", now=200, inputs_changed=True, **W) is None


@pytest.mark.parametrize("state", ["missed", "cancelled"])
def test_final_states_do_nothing_and_allow_nothing(state: str) -> None:
    assert decide(state, now=150, inputs_changed=True, **W) is None
    for action in Action:
        with pytest.raises(WindowError, match="final"):
            transition(state, action)


def test_the_table_is_the_only_source_of_transitions() -> None:
    assert transition("planned", "publish") is WindowState.PUBLISHED
    assert transition("published", "cancel") is WindowState.CANCELLED
    with pytest.raises(WindowError, match="allows: cancel, republish"):
        transition("published", "publish")
    # every decision the scheduler can take is a transition the table allows
    for state in WindowState:
        for now in (0, 100, 150, 250, 300):
            for changed in (False, True):
                action = decide(state, now=now, inputs_changed=changed, **W)
                if action is not None:
                    assert (state, action) in TRANSITIONS
