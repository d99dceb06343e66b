"""The admin API registers a device under an aggregator only if the operator named that aggregator
(issue 17, item 4): otherwise a device would be "managed" by an LFDI with no aggregator scope."""

from __future__ import annotations

import pytest

API = "/admin/api/v1"


@pytest.mark.parametrize(
    "aggregator",
    ["EF" * 20, "ef" * 20, "nope", 42, "中" * 40],
)
def test_unnamed_or_malformed_aggregator_is_400_naming_the_field(operator, aggregator) -> None:  # noqa: ANN001
    resp = operator("POST", "/devices", json={"lfdi": "AB" * 20, "aggregator_lfdi": aggregator})
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    problem = resp.get_json()
    assert problem["field"] == "aggregator_lfdi" and problem["title"] == "Invalid"
    assert "aggregator_lfdi" in problem["detail"]
    assert operator("GET", "/devices").get_json()["all"] == 0


def test_a_named_aggregator_is_accepted_and_normalised(operator) -> None:  # noqa: ANN001
    assert operator("POST", "/aggregators", json={"lfdi": "EF" * 20, "name": "fleet co"}).status_code == 201
    resp = operator("POST", "/devices", json={"lfdi": "AB" * 20, "aggregator_lfdi": "ef" * 20})
    assert resp.status_code == 201
    assert resp.get_json()["aggregator_lfdi"] == "EF" * 20
