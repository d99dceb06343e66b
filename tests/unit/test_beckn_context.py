"""Beckn v1.1.0 context, envelopes and safe JSON: what a BPP accepts, and the path it names when not.

The envelopes and a callback are also validated against the official `v1.1.0-transaction.yaml`
found through $BECKN_REFERENCE_DIR (never copied into the project); those tests skip when the
variable is unset or when jsonschema/PyYAML are not installed."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from server.beckn.codec import JsonError, parse_json, render_json
from server.beckn.context import (
    BPP_ACTIONS,
    CALLBACK_ACTIONS,
    Context,
    ContextError,
    Location,
    callback_context,
    context_from_json,
    parse_context,
    unsolicited_context,
)
from server.beckn.envelope import (
    EnvelopeError,
    ack,
    callback_body,
    error_object,
    nack,
    nack_for,
    parse_request,
    render,
)
from server.beckn.errors import BecknError, ErrorCode
from server.beckn.timefmt import Duration, parse_duration, parse_timestamp, render_timestamp

REFERENCE_ENV = "BECKN_REFERENCE_DIR"
BPP = "bpp.flex.example"
BPP_URI = "https://bpp.flex.example/beckn"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
TXN = "6f1c2b1e-8a59-4c53-9a53-0d0f1c0e6a11"
MSG = "0b7e4a52-2f3d-4c1e-8d0c-5f8d9b6c1a22"


def _ctx(**changes: Any) -> dict[str, Any]:
    """A valid `status` request context; a change of None removes the field."""
    ctx: dict[str, Any] = {
        "domain": "deg:flex", "location": {"country": {"code": "USA"}, "city": {"code": "std:415"}},
        "action": "status", "version": "1.1.0", "bap_id": "bap.example.org",
        "bap_uri": "https://bap.example.org/beckn", "bpp_id": BPP, "bpp_uri": BPP_URI,
        "transaction_id": TXN, "message_id": MSG, "timestamp": "2025-06-01T11:59:50.000Z", "ttl": "PT30S",
    }
    for key, value in changes.items():
        if value is None:
            ctx.pop(key, None)
        else:
            ctx[key] = value
    return ctx


def _parse(obj: Any, *, action: str = "status", now: datetime = NOW, **kw: Any) -> Context:
    return parse_context(obj, action=action, bpp_id=BPP, now=now, **kw)


def _path_of(obj: Any, **kw: Any) -> str | None:
    with pytest.raises(ContextError) as info:
        _parse(obj, **kw)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    return info.value.path


# ------------------------------------------------------------------------------- valid contexts


def test_valid_context_is_typed() -> None:
    ctx = _parse(_ctx(key="pk"))
    assert ctx.action == "status" and ctx.version == "1.1.0"
    assert ctx.location == Location(country_code="USA", city_code="std:415")
    assert ctx.timestamp == datetime(2025, 6, 1, 11, 59, 50, tzinfo=UTC)
    assert ctx.ttl == Duration(seconds=Decimal(30))
    assert ctx.deadline() == datetime(2025, 6, 1, 12, 0, 20, tzinfo=UTC)
    assert (ctx.transaction_id, ctx.message_id, ctx.key) == (TXN, MSG, "pk")


def test_context_round_trips_through_json() -> None:
    obj = _ctx(key="pk")
    assert _parse(obj).to_json() == obj


def test_optional_fields_may_be_absent() -> None:
    """domain, location, bpp_uri and key are optional; location parts are optional too."""
    ctx = _parse(_ctx(domain=None, location=None, bpp_uri=None))
    assert (ctx.domain, ctx.location, ctx.bpp_uri, ctx.key) == (None, None, None, None)
    assert _parse(_ctx(location={"city": {"code": "x"}})).location == Location(city_code="x")


def test_search_may_come_without_bpp_id() -> None:
    """A gateway broadcasts search: bpp_id may be absent there, and only there."""
    assert _parse(_ctx(action="search", bpp_id=None, bpp_uri=None), action="search").bpp_id is None
    assert _path_of(_ctx(bpp_id=None)) == "context.bpp_id"


@pytest.mark.parametrize("action", sorted(BPP_ACTIONS))
def test_every_served_action_is_accepted_at_its_endpoint(action: str) -> None:
    assert _parse(_ctx(action=action), action=action).action == action


def test_actions_served() -> None:
    assert BPP_ACTIONS == {"search", "select", "init", "confirm", "status", "update", "cancel", "track",
                           "support", "rating", "get_rating_categories", "get_cancellation_reasons",
                           "aggregate"}
    with pytest.raises(ValueError):
        _parse(_ctx(action="on_status"), action="on_status")


# ------------------------------------------------------------------------------ refusals by path


@pytest.mark.parametrize("field", ["version", "action", "bap_id", "bap_uri", "transaction_id",
                                   "message_id", "timestamp", "ttl", "bpp_id"])
def test_missing_field_is_named(field: str) -> None:
    assert _path_of(_ctx(**{field: None})) == f"context.{field}"


@pytest.mark.parametrize(("changes", "path"), [
    ({"bap_id": 7}, "context.bap_id"),
    ({"bap_id": ""}, "context.bap_id"),
    ({"bap_id": "a" * 256}, "context.bap_id"),
    ({"message_id": "m\n1"}, "context.message_id"),
    ({"transaction_id": ["t"]}, "context.transaction_id"),
    ({"bap_uri": "ftp://bap.example.org/"}, "context.bap_uri"),
    ({"bap_uri": "bap.example.org/beckn"}, "context.bap_uri"),
    ({"bap_uri": "https://"}, "context.bap_uri"),
    ({"bap_uri": "https://user:pw@bap.example.org/"}, "context.bap_uri"),
    ({"bap_uri": "https://bap.example.org/#x"}, "context.bap_uri"),
    ({"bap_uri": "https://bap.example.org:99999/"}, "context.bap_uri"),
    ({"bap_uri": "https://bap.example.org/a b"}, "context.bap_uri"),
    ({"bpp_uri": "javascript:alert(1)"}, "context.bpp_uri"),
    ({"timestamp": "2025-06-01T11:59:50"}, "context.timestamp"),
    ({"timestamp": "2025-06-01 11:59:50Z"}, "context.timestamp"),
    ({"timestamp": "2025-13-01T11:59:50Z"}, "context.timestamp"),
    ({"timestamp": "2025-06-01T11:59:50+24:00"}, "context.timestamp"),
    ({"timestamp": 1748779190}, "context.timestamp"),
    ({"ttl": "30s"}, "context.ttl"),
    ({"ttl": "PT"}, "context.ttl"),
    ({"ttl": "P"}, "context.ttl"),
    ({"ttl": "-PT30S"}, "context.ttl"),
    ({"ttl": "PT1.5M"}, "context.ttl"),
    ({"ttl": 30}, "context.ttl"),
    ({"ttl": "P999999999Y"}, "context.ttl"),
    ({"domain": 5}, "context.domain"),
    ({"key": {"k": 1}}, "context.key"),
    ({"location": "Kochi"}, "context.location"),
    ({"location": {"country": "IND"}}, "context.location.country"),
    ({"location": {"city": {"code": 682}}}, "context.location.city.code"),
])
def test_invalid_field_is_named(changes: dict[str, Any], path: str) -> None:
    assert _path_of(_ctx(**changes)) == path


@pytest.mark.parametrize("value", [None, "ctx", [], 1])
def test_context_must_be_an_object(value: Any) -> None:
    assert _path_of(value) == "context"


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0", "1.1", "0.9.1"])
def test_wrong_version(version: str) -> None:
    """Only 1.1.0 is spoken; the version is checked first so a v2 message is told so."""
    with pytest.raises(ContextError, match="not supported") as info:
        _parse(_ctx(version=version, bap_id=None))
    assert info.value.path == "context.version"


def test_action_other_than_the_endpoint() -> None:
    with pytest.raises(ContextError, match="'select' endpoint") as info:
        _parse(_ctx(action="confirm"), action="select")
    assert info.value.path == "context.action"


def test_bpp_id_other_than_ours() -> None:
    assert _path_of(_ctx(bpp_id="bpp.someone-else.example")) == "context.bpp_id"


def test_domain_checked_when_the_bpp_names_its_domains() -> None:
    assert _parse(_ctx(), domains={"deg:flex"}).domain == "deg:flex"
    assert _path_of(_ctx(domain="retail"), domains={"deg:flex"}) == "context.domain"
    assert _path_of(_ctx(domain=None), domains={"deg:flex"}) == "context.domain"


def test_ttl_elapsed() -> None:
    """A request whose timestamp + ttl has passed is refused; the deadline itself is still valid."""
    deadline = datetime(2025, 6, 1, 12, 0, 20, tzinfo=UTC)
    _parse(_ctx(), now=deadline)
    with pytest.raises(ContextError, match="expired") as info:
        _parse(_ctx(), now=deadline + timedelta(microseconds=1))
    assert info.value.path == "context.ttl"


def test_timestamp_in_the_future() -> None:
    ts = NOW + timedelta(seconds=5)
    _parse(_ctx(timestamp=render_timestamp(ts)))
    assert _path_of(_ctx(timestamp=render_timestamp(ts + timedelta(milliseconds=1)))) == "context.timestamp"


def test_calendar_ttl() -> None:
    """P1M is a calendar month: 31 January + P1M ends on the last day of February."""
    ctx = _parse(_ctx(timestamp="2024-01-31T10:00:00+01:00", ttl="P1M"),
                 now=datetime(2024, 2, 29, 9, 0, tzinfo=UTC))
    assert ctx.deadline() == datetime(2024, 2, 29, 9, 0, tzinfo=UTC)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        _parse(_ctx(), now=datetime(2025, 6, 1, 12))


# ---------------------------------------------------------------------------- time and durations


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-06-01T12:00:00Z", datetime(2025, 6, 1, 12, tzinfo=UTC)),
    ("2025-06-01t17:30:00.5+05:30", datetime(2025, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)),
    ("2025-06-01T12:00:00.123456789z", datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
])
def test_rfc3339_timestamps(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


def test_timestamps_render_in_utc_with_milliseconds() -> None:
    local = datetime(2025, 6, 1, 17, 30, 0, 971999, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert render_timestamp(local) == "2025-06-01T12:00:00.971Z"
    with pytest.raises(ValueError):
        render_timestamp(datetime(2025, 6, 1))


@pytest.mark.parametrize("text", ["PT30S", "P1M", "P1DT2H", "PT0.5S", "P1Y2M3W4DT5H6M7S", "PT0S"])
def test_durations_round_trip(text: str) -> None:
    assert str(parse_duration(text)) == text


# ------------------------------------------------------------------------------------- envelopes


def test_ack_and_nack_shapes() -> None:
    assert ack() == {"message": {"ack": {"status": "ACK"}}}
    assert render(ack()) == b'{"message":{"ack":{"status":"ACK"}}}'
    assert nack(ErrorCode.INVALID_REQUEST, "context.ttl the request expired", "context.ttl") == {
        "message": {"ack": {"status": "NACK"}},
        "error": {"code": "30000", "path": "context.ttl", "message": "context.ttl the request expired"},
    }
    assert error_object(ErrorCode.ORDER_NOT_FOUND, "no order o-9") == {"code": "30010",
                                                                        "message": "no order o-9"}


def test_nack_for_a_refused_context_names_the_path() -> None:
    with pytest.raises(BecknError) as info:
        parse_request(render_json({"context": _ctx(bap_uri="x"), "message": {}}), action="status",
                      bpp_id=BPP, now=NOW)
    answer = nack_for(info.value)
    assert answer["message"] == {"ack": {"status": "NACK"}}
    assert answer["error"]["code"] == "30000" and answer["error"]["path"] == "context.bap_uri"
    assert answer["error"]["message"].startswith("context.bap_uri ")


def test_error_codes_are_the_v1_list() -> None:
    assert sorted(int(c) for c in ErrorCode) == [
        30000, 30001, 30004, 30008, 30010, 30011, 30012, 30014, 30015, 40000, 40001, 40002, 40003,
        40004, 40005, 50000, 50001, 50002, 50003, 50004]


def test_parse_request() -> None:
    req = parse_request(render_json({"context": _ctx(), "message": {"order_id": "o-1"}}),
                        action="status", bpp_id=BPP, now=NOW)
    assert req.context.message_id == MSG and req.message == {"order_id": "o-1"}
    meta = parse_request(render_json({"context": _ctx(action="get_rating_categories")}),
                         action="get_rating_categories", bpp_id=BPP, now=NOW)
    assert meta.message == {}


@pytest.mark.parametrize(("doc", "path"), [
    ({"context": _ctx()}, "message"),
    ({"context": _ctx(), "message": []}, "message"),
    ({"message": {}}, "context"),
])
def test_request_envelope_refusals(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(BecknError) as info:
        parse_request(render_json(doc), action="status", bpp_id=BPP, now=NOW)
    assert info.value.path == path
    assert isinstance(info.value, EnvelopeError if path == "message" else ContextError)


# ------------------------------------------------------------------------------------- safe JSON


@pytest.mark.parametrize(("body", "why"), [
    (b"", "invalid JSON"),
    (b"{", "invalid JSON"),
    (b"[1]", "must be a JSON object"),
    (b'"x"', "must be a JSON object"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e400}', "out of range"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"a": {"b": 1, "b": 1}}', "duplicate key 'b'"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b"\xef\xbb\xbf{}", "byte-order mark"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b'{"a": ' + b"9" * 5000 + b"}", "invalid JSON"),
    (b'{"a":' + b"[" * 65 + b"]" * 65 + b"}", "deeper"),
    (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper"),
])
def test_unsafe_json_is_refused_clearly(body: bytes, why: str) -> None:
    with pytest.raises(JsonError, match=why) as info:
        parse_json(body, max_bytes=1_000_000)
    assert info.value.code == ErrorCode.INVALID_REQUEST and info.value.path is None


def test_json_size_bound() -> None:
    body = render_json({"pad": "x" * 300_000})
    with pytest.raises(JsonError, match="at most"):
        parse_json(body)
    assert parse_json(body, max_bytes=len(body))["pad"] == "x" * 300_000


def test_mangled_requests_never_raise_anything_but_a_beckn_error() -> None:
    """Random byte mutations of a valid request: either accepted or a BecknError, never a traceback."""
    body = render_json({"context": _ctx(), "message": {"order_id": "o-1"}})
    rng = random.Random(20305)
    for _ in range(500):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            parse_request(bytes(mutated), action="status", bpp_id=BPP, now=NOW)
        except BecknError:
            pass


# ------------------------------------------------------------------------------------- callbacks


def test_callback_context() -> None:
    """A callback keeps transaction_id and message_id, takes a new timestamp and our bpp_id/uri."""
    request = _parse(_ctx(action="search", bpp_id=None, bpp_uri=None, key="pk"), action="search")
    later = NOW + timedelta(seconds=2)
    cb = callback_context(request, now=later, bpp_id=BPP, bpp_uri=BPP_URI)
    assert (cb.action, cb.transaction_id, cb.message_id) == ("on_search", TXN, MSG)
    assert (cb.timestamp, cb.bpp_id, cb.bpp_uri, cb.key, cb.ttl) == (later, BPP, BPP_URI, None, request.ttl)
    assert cb.to_json()["timestamp"] == "2025-06-01T12:00:02.000Z"
    assert context_from_json(cb.to_json()) == cb


def test_callback_actions() -> None:
    """Transaction actions answer on_<action>; the meta API answers without the get_ prefix."""
    assert CALLBACK_ACTIONS["confirm"] == "on_confirm"
    assert CALLBACK_ACTIONS["aggregate"] == "on_aggregate"
    assert CALLBACK_ACTIONS["get_rating_categories"] == "rating_categories"
    assert CALLBACK_ACTIONS["get_cancellation_reasons"] == "cancellation_reasons"
    with pytest.raises(ValueError):
        callback_context(callback_context(_parse(_ctx()), now=NOW, bpp_id=BPP, bpp_uri=BPP_URI),
                         now=NOW, bpp_id=BPP, bpp_uri=BPP_URI)


def test_unsolicited_context_has_a_new_message_id() -> None:
    previous = _parse(_ctx(action="confirm"), action="confirm")
    push = unsolicited_context(previous, action="on_status", message_id="m-2", now=NOW, bpp_id=BPP,
                               bpp_uri=BPP_URI, ttl=parse_duration("PT1M"))
    assert (push.action, push.transaction_id, push.message_id) == ("on_status", TXN, "m-2")
    with pytest.raises(ValueError):
        unsolicited_context(previous, action="on_status", message_id=MSG, now=NOW, bpp_id=BPP,
                            bpp_uri=BPP_URI, ttl=parse_duration("PT1M"))
    with pytest.raises(ValueError):
        unsolicited_context(previous, action="status", message_id="m-3", now=NOW, bpp_id=BPP,
                            bpp_uri=BPP_URI, ttl=parse_duration("PT1M"))


# ------------------------------------------------------------------------- official schema check


@pytest.fixture(scope="module")
def transaction_spec() -> dict[str, Any]:
    folder = os.environ.get(REFERENCE_ENV)
    if not folder:
        pytest.skip(f"{REFERENCE_ENV} is not set: point it at the official Beckn v1.1.0 reference "
                    "folder (CI sets it) to validate envelopes against v1.1.0-transaction.yaml")
    pytest.importorskip("jsonschema", reason="jsonschema is not installed in this environment: "
                        "the envelopes cannot be validated against v1.1.0-transaction.yaml")
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed in this environment: "
                               "v1.1.0-transaction.yaml cannot be loaded")
    path = Path(folder) / "v1.1.0-transaction.yaml"
    if not path.is_file():
        pytest.fail(f"{REFERENCE_ENV}={folder} has no v1.1.0-transaction.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _errors(spec: dict[str, Any], pointer: str, instance: Any) -> list[str]:
    """Validate against the schema at `pointer` inside the OpenAPI document (refs resolve in it).

    OpenAPI 3.0 schema objects are a JSON Schema draft-4 dialect, hence Draft4Validator."""
    import jsonschema

    root = {"components": spec["components"], "paths": spec["paths"], "allOf": [{"$ref": "#" + pointer}]}
    validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


_ACK_SCHEMA = "/paths/~1init/post/responses/default/content/application~1json/schema"


def _request_schema(action: str) -> str:
    return f"/paths/~1{action}/post/requestBody/content/application~1json/schema"


def test_ack_and_nack_match_the_official_schema(transaction_spec: dict[str, Any]) -> None:
    assert _errors(transaction_spec, _ACK_SCHEMA, ack()) == []
    assert _errors(transaction_spec, _ACK_SCHEMA, nack(ErrorCode.INVALID_REQUEST, "bad", "context.ttl")) == []
    assert _errors(transaction_spec, _ACK_SCHEMA, {"message": {"ack": {"status": "MAYBE"}}}) != []


def test_callback_matches_the_official_schema(transaction_spec: dict[str, Any]) -> None:
    request = _parse(_ctx(action="confirm"), action="confirm")
    cb = callback_context(request, now=NOW, bpp_id=BPP, bpp_uri=BPP_URI)
    body = callback_body(cb, {"order": {"id": "enr-1", "status": "ACTIVE"}})
    assert _errors(transaction_spec, _request_schema("on_confirm"), json.loads(render(body))) == []
    push = unsolicited_context(request, action="on_status", message_id="5d1f0c3e-7b2a-4e61-9a0d-3c4b5a6d7e8f",
                               now=NOW, bpp_id=BPP, bpp_uri=BPP_URI, ttl=parse_duration("PT30S"))
    failed = callback_body(push, {"order": {"id": "enr-1"}}, error_object(ErrorCode.ORDER_NOT_FOUND, "gone"))
    assert _errors(transaction_spec, _request_schema("on_status"), failed) == []
    wrong = callback_body(cb, {"order": {"id": "enr-1"}})
    assert _errors(transaction_spec, _request_schema("on_status"), wrong) != []  # action on_confirm
