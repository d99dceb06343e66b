"""server.beckn.orders: the order state table, every pair of state and event."""

from __future__ import annotations

import pytest

from server.beckn.errors import ErrorCode
from server.beckn.orders import OrderError, OrderState, beckn_status, transition

ALLOWED = {
    (None, "init"): "draft", ("draft", "init"): "draft", ("draft", "confirm"): "active",
    ("active", "update"): "active", ("active", "cancel"): "cancelled", ("draft", "cancel"): "cancelled",
}


@pytest.mark.parametrize("state", [None, "draft", "active", "cancelled"])
@pytest.mark.parametrize("event", ["init", "confirm", "update", "cancel"])
def test_every_pair_follows_the_table(state, event) -> None:  # noqa: ANN001
    want = ALLOWED.get((state, event))
    if want is not None:
        assert transition(state, event) == OrderState(want)
        return
    with pytest.raises(OrderError) as err:
        transition(state, event)
    expected = {"cancel": ErrorCode.CANCELLATION_NOT_POSSIBLE, "update": ErrorCode.UPDATION_NOT_POSSIBLE}
    assert err.value.code == expected.get(event, ErrorCode.BUSINESS_ERROR)
    assert err.value.path == "message.order" and event in err.value.message


def test_beckn_knows_only_active_and_cancelled_of_ours() -> None:
    assert [beckn_status(s) for s in ("draft", "active", "cancelled")] == ["ACTIVE", "ACTIVE", "CANCELLED"]
