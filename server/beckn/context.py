"""The Beckn v1.1.0 `context`: a typed value, its validation for a BPP, and callback contexts.

The official schema requires almost nothing; a BPP enforces what it needs itself. Rules, checked in
this order so that the first failure reported is the most telling one (a v2 message fails on its
version, not on a field it spells differently):

1. `context` is an object; `version` is "1.1.0"; `action` is a string and, for a request, the action
   of the endpoint it was posted to.
2. `bap_id`, `transaction_id`, `message_id`: non-empty strings of at most 255 characters with no
   control characters (the schema says uuid for the ids; networks use other forms, so any such
   string is accepted — the BPP only matches them). `bap_uri` (and `bpp_uri` when present): an
   absolute http(s) URL with a host, no credentials, no fragment, no whitespace, at most 2048
   characters; `bap_uri`, which we call, must also have one reading only (no dot segments, `//`,
   query or encoded separators: server.beckn.urls). `timestamp`: an RFC 3339 date-time with an
   offset. `ttl`: an ISO 8601 duration.
   `domain`, `key`, `bpp_id`: strings when present; `location` an object whose `country` and
   `city` are objects whose `code` is a string.
3. For a request to this BPP (`parse_context`): `bpp_id` is ours — it may be absent only on
   `search`, which a gateway broadcasts; `domain` is one we serve when the BPP names its domains;
   `ttl` is present (it is the callback's deadline); `timestamp` is not later than `now` + skew
   and `timestamp` + `ttl` is not earlier than `now` (a request is valid up to and including its
   deadline).

A failure raises ContextError (code 30000) naming the dotted path (`context.location.city.code`).

Callbacks: `callback_context` answers a request — `on_<action>` (the meta API answers
`get_rating_categories` with `rating_categories` and `get_cancellation_reasons` with
`cancellation_reasons`), the same transaction_id and message_id, a new timestamp, our bpp_id/uri.
`unsolicited_context` starts a push (on_status, on_update…) in a known transaction with a new
message_id.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from server.beckn.errors import BecknError
from server.beckn.timefmt import Duration, parse_duration, parse_timestamp, render_timestamp
from server.beckn.urls import UnsafeURL, parse_base

VERSION = "1.1.0"

#: Request action -> its callback action: v1.1.0 transaction and meta APIs, and the seed's aggregate.
CALLBACK_ACTIONS: Mapping[str, str] = MappingProxyType({
    "search": "on_search",
    "select": "on_select",
    "init": "on_init",
    "confirm": "on_confirm",
    "status": "on_status",
    "update": "on_update",
    "cancel": "on_cancel",
    "track": "on_track",
    "support": "on_support",
    "rating": "on_rating",
    "get_rating_categories": "rating_categories",
    "get_cancellation_reasons": "cancellation_reasons",
    "aggregate": "on_aggregate",
})
#: The actions this BPP serves (one endpoint each).
BPP_ACTIONS: frozenset[str] = frozenset(CALLBACK_ACTIONS)
#: The meta API requests, which carry no `message`.
META_ACTIONS: frozenset[str] = frozenset({"get_rating_categories", "get_cancellation_reasons"})

MAX_ID_CHARS = 255
MAX_URI_CHARS = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")


class ContextError(BecknError):
    """The context cannot be accepted (code 30000); `path` names the failing field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """`context.location`: the country and city codes of the transaction (both optional)."""

    country_code: str | None = None
    city_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.country_code is not None:
            out["country"] = {"code": self.country_code}
        if self.city_code is not None:
            out["city"] = {"code": self.city_code}
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """A v1.1.0 context; `timestamp` is aware, `ttl` None only where the sender omitted it."""

    domain: str | None
    location: Location | None
    action: str
    version: str
    bap_id: str
    bap_uri: str
    bpp_id: str | None
    bpp_uri: str | None
    transaction_id: str
    message_id: str
    timestamp: datetime
    ttl: Duration | None
    key: str | None = None

    def deadline(self) -> datetime | None:
        """`timestamp` + `ttl`, the last instant the message is valid (None without a ttl).

        Raises OverflowError for a ttl that reaches beyond year 9999."""
        return None if self.ttl is None else self.ttl.add_to(self.timestamp)

    def to_json(self) -> dict[str, Any]:
        """The wire object, fields in the schema's order, absent ones omitted."""
        out: dict[str, Any] = {}
        if self.domain is not None:
            out["domain"] = self.domain
        if self.location is not None:
            out["location"] = self.location.to_json()
        out |= {"action": self.action, "version": self.version, "bap_id": self.bap_id,
                "bap_uri": self.bap_uri}
        if self.bpp_id is not None:
            out["bpp_id"] = self.bpp_id
        if self.bpp_uri is not None:
            out["bpp_uri"] = self.bpp_uri
        out |= {"transaction_id": self.transaction_id, "message_id": self.message_id,
                "timestamp": render_timestamp(self.timestamp)}
        if self.ttl is not None:
            out["ttl"] = str(self.ttl)
        if self.key is not None:
            out["key"] = self.key
        return out


# ------------------------------------------------------------------------------------------ read


def context_from_json(obj: Any, *, action: str | None = None, path: str = "context") -> Context:
    """Rules 1 and 2: a Context from the decoded `context` value, or ContextError."""
    if obj is None:
        raise ContextError("is missing", path)
    if not isinstance(obj, dict):
        raise ContextError("must be an object", path)
    version = _text(obj, "version", path)
    if version != VERSION:
        raise ContextError(f"version {version[:20]!r} is not supported; this BPP speaks {VERSION}",
                           f"{path}.version")
    got_action = _text(obj, "action", path)
    if action is not None and got_action != action:
        raise ContextError(f"action {got_action[:40]!r} was posted to the {action!r} endpoint",
                           f"{path}.action")
    domain = _text(obj, "domain", path, required=False)
    location = _location(obj.get("location"), f"{path}.location")
    bap_id = _ident(obj, "bap_id", path)
    bap_uri = _uri(obj, "bap_uri", path)
    bpp_id = _ident(obj, "bpp_id", path, required=False)
    bpp_uri = _uri(obj, "bpp_uri", path, required=False)
    transaction_id = _ident(obj, "transaction_id", path)
    message_id = _ident(obj, "message_id", path)
    stamp_text = _text(obj, "timestamp", path)
    try:
        timestamp = parse_timestamp(stamp_text)
    except ValueError as exc:
        raise ContextError(str(exc), f"{path}.timestamp") from None
    ttl_text = _text(obj, "ttl", path, required=False)
    try:
        ttl = None if ttl_text is None else parse_duration(ttl_text)
    except ValueError as exc:
        raise ContextError(str(exc), f"{path}.ttl") from None
    key = _text(obj, "key", path, required=False)
    return Context(domain=domain, location=location, action=got_action, version=version,
                   bap_id=bap_id, bap_uri=bap_uri, bpp_id=bpp_id, bpp_uri=bpp_uri,
                   transaction_id=transaction_id, message_id=message_id, timestamp=timestamp,
                   ttl=ttl, key=key)


def parse_context(obj: Any, *, action: str, bpp_id: str, now: datetime,
                  skew: timedelta = timedelta(seconds=5), domains: Collection[str] | None = None,
                  path: str = "context") -> Context:
    """Rules 1–3: the context of a request posted to this BPP's `action` endpoint, or ContextError."""
    if action not in BPP_ACTIONS:
        raise ValueError(f"{action!r} is not an action this BPP serves")
    _aware(now)
    ctx = context_from_json(obj, action=action, path=path)
    if ctx.bpp_id is None and action != "search":
        raise ContextError("is missing", f"{path}.bpp_id")
    if ctx.bpp_id is not None and ctx.bpp_id != bpp_id:
        raise ContextError(f"{ctx.bpp_id[:60]!r} is not this BPP ({bpp_id})", f"{path}.bpp_id")
    if domains is not None and ctx.domain not in domains:
        what = "is missing" if ctx.domain is None else f"{ctx.domain[:60]!r} is not served here"
        raise ContextError(f"{what} (served: {', '.join(sorted(domains))})", f"{path}.domain")
    if ctx.ttl is None:
        raise ContextError("is missing (a request must say how long it is valid)", f"{path}.ttl")
    if ctx.timestamp > now + skew:
        raise ContextError(f"{render_timestamp(ctx.timestamp)} is in the future", f"{path}.timestamp")
    try:
        deadline = ctx.ttl.add_to(ctx.timestamp)
    except OverflowError:
        raise ContextError(f"{ctx.ttl} is too long", f"{path}.ttl") from None
    if deadline < now:
        raise ContextError(f"the request expired at {render_timestamp(deadline)} "
                           f"(timestamp + {ctx.ttl})", f"{path}.ttl")
    return ctx


def _text(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise ContextError("is missing", f"{path}.{name}")
        return None
    if not isinstance(value, str):
        raise ContextError("must be a string", f"{path}.{name}")
    if required and not value:
        raise ContextError("must not be empty", f"{path}.{name}")
    return value


def _ident(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> Any:
    value = _text(obj, name, path, required=required)
    if value is None:
        return None
    if not value or len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        raise ContextError(f"must be 1 to {MAX_ID_CHARS} characters without control characters",
                           f"{path}.{name}")
    return value


def _uri(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> Any:
    value = _text(obj, name, path, required=required)
    if value is None:
        return None
    where = f"{path}.{name}"
    if len(value) > MAX_URI_CHARS or _WHITESPACE.search(value) or _CONTROL.search(value):
        raise ContextError(f"must be a URL of at most {MAX_URI_CHARS} characters without spaces", where)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ContextError(f"{value[:80]!r} is not a valid URL", where) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ContextError(f"{value[:80]!r} is not an absolute http(s) URL", where)
    if parts.username is not None or parts.password is not None:
        raise ContextError("must not carry credentials", where)
    if parts.fragment or value.endswith("#"):
        raise ContextError("must not carry a fragment", where)
    if name == "bap_uri":  # we POST to it: it must have one reading only (server.beckn.urls)
        try:
            parse_base(value)
        except UnsafeURL as exc:
            raise ContextError(f"{value[:80]!r} is not a safe callback URL: it {exc}", where) from None
    return value


def _location(obj: Any, path: str) -> Location | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ContextError("must be an object", path)
    codes: list[str | None] = []
    for part in ("country", "city"):
        sub = obj.get(part)
        if sub is not None and not isinstance(sub, dict):
            raise ContextError("must be an object", f"{path}.{part}")
        codes.append(None if sub is None else _text(sub, "code", f"{path}.{part}", required=False))
    return Location(country_code=codes[0], city_code=codes[1])


# ------------------------------------------------------------------------------------- callbacks


def callback_context(request: Context, *, now: datetime, bpp_id: str, bpp_uri: str,
                     ttl: Duration | None = None) -> Context:
    """The context of the callback answering `request`: its callback action, the same
    transaction_id and message_id, timestamp `now`, our bpp_id/bpp_uri, `ttl` (default: the
    request's), no key."""
    action = CALLBACK_ACTIONS.get(request.action)
    if action is None:
        raise ValueError(f"{request.action!r} has no callback")
    return dataclasses.replace(request, action=action, bpp_id=bpp_id, bpp_uri=bpp_uri,
                               timestamp=_aware(now), ttl=ttl if ttl is not None else request.ttl, key=None)


def unsolicited_context(previous: Context, *, action: str, message_id: str, now: datetime,
                        bpp_id: str, bpp_uri: str, ttl: Duration) -> Context:
    """The context of a push in `previous`'s transaction: callback `action` (on_status, on_update…),
    a new `message_id` (it must differ from the previous one), timestamp `now`, no key."""
    if action not in CALLBACK_ACTIONS.values():
        raise ValueError(f"{action!r} is not a callback action")
    if not message_id or message_id == previous.message_id:
        raise ValueError("an unsolicited callback needs a new message_id")
    return dataclasses.replace(previous, action=action, message_id=message_id, bpp_id=bpp_id,
                               bpp_uri=bpp_uri, timestamp=_aware(now), ttl=ttl, key=None)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be an aware datetime")
    return now
