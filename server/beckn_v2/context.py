"""The Beckn v2.0.0 `context`: camelCase, `networkId`, `schemaContext`, in both shapes the LTS
allows, with its validation for a BPP and the contexts of our callbacks.

Shapes: the LTS tag (`core-v2.0.0-lts`) defines `domain` and `location`; its later release branch
drops them and adds `try`, `senderId`, `receiverId`. Which one networks send is not settled, so a
request may use either (or keys of both): `shape` records which it used ("lts", "release" or
"lts" when it used neither's own keys). Our callbacks use the LTS tag's shape (no `try`,
`senderId`, `receiverId`), which both schema files accept: core Context requires nothing and
forbids no extra key. Other unknown keys (the devkits' `_comment…`, `tags`) are ignored.

Rules for a request posted to this BPP's `action` endpoint (`parse_context`), first failure wins:

1. `context` is an object; `version` is "2.0.0" (50006 otherwise: a v1.1.0 message posted to the v2
   path is told which version this path speaks); `action` is the endpoint's.
2. `bapId`, `transactionId`, `messageId`: 1-255 characters without control characters (core says
   uuid for the ids; like v1 any such string is accepted, the BPP only matches them). `bapUri`:
   an absolute http(s) URL with one reading (server.beckn.urls), since we POST callbacks to it.
   `bppUri` an http(s) URL when present. `timestamp`: RFC 3339 with an offset. `ttl`: an ISO 8601
   duration when present (the DEG examples omit it: then `DEFAULT_TTL` applies). `networkId`:
   `{namespace}/{registry}[@{host}]` when present, and one of the BPP's networks when it names
   any. `schemaContext`: at most 50 http(s) URIs. `requestDigest.digest`: `BLAKE-512=<base64>`.
   `try`: a boolean. `domain`, `key`, `senderId`, `receiverId`: strings.
3. `bppId` is ours (it may be absent only on `discover`); `receiverId`, when given, is ours too and
   `senderId` is the `bapId`; `timestamp` not later than now + skew; timestamp + ttl not before now.

A failure raises V2Error naming the dotted path: code 50006 for the version, 60005 for a context
that is well formed but not for us or not now (bppId, receiverId/senderId, networkId, timestamp,
ttl), 30000 for a malformed field.
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

from server.beckn.timefmt import Duration, parse_duration, parse_timestamp, render_timestamp
from server.beckn.urls import UnsafeURL, parse_base
from server.beckn_v2.errors import V2Code, V2Error

VERSION = "2.0.0"
DEFAULT_TTL = "PT5M"  # a request without ttl is fresh this long after its timestamp (UNCONFIRMED)

#: Request action -> its callback action (core LTS paths the BPP serves).
CALLBACK_ACTIONS: Mapping[str, str] = MappingProxyType({
    "discover": "on_discover",
    "select": "on_select",
    "init": "on_init",
    "confirm": "on_confirm",
    "status": "on_status",
    "update": "on_update",
    "cancel": "on_cancel",
    "track": "on_track",
    "support": "on_support",
    "rate": "on_rate",
})
BPP_ACTIONS: frozenset[str] = frozenset(CALLBACK_ACTIONS)
#: Actions where `try: true` asks for a preview that commits nothing (release branch).
TRY_ACTIONS: frozenset[str] = frozenset({"update", "cancel", "rate", "support"})

MAX_ID_CHARS = 255
MAX_URI_CHARS = 2048
MAX_SCHEMA_CONTEXTS = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")
_NETWORK = re.compile(r"[A-Za-z0-9.-]+/[A-Za-z0-9._-]+(@[A-Za-z0-9.-]+(:[0-9]+)?)?")
_DIGEST = re.compile(r"BLAKE-512=[A-Za-z0-9+/]+=*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """A v2 context; `timestamp` is aware, `ttl` None where the sender omitted it."""

    action: str
    bap_id: str
    bap_uri: str
    bpp_id: str | None
    bpp_uri: str | None
    transaction_id: str
    message_id: str
    timestamp: datetime
    version: str = VERSION
    network_id: str | None = None
    ttl: Duration | None = None
    key: str | None = None
    schema_context: tuple[str, ...] = ()
    request_digest: str | None = None
    domain: str | None = None
    location: Mapping[str, Any] | None = None
    try_: bool | None = None
    sender_id: str | None = None
    receiver_id: str | None = None
    page_cursor: str | None = None  # a status pull's `tags` pagination/pageCursor (read, never sent)

    @property
    def shape(self) -> str:
        """"release" when the sender used a key only the release branch defines, else "lts"."""
        if self.try_ is not None or self.sender_id is not None or self.receiver_id is not None:
            return "release"
        return "lts"

    @property
    def preview(self) -> bool:
        """`try: true` on an action that allows it: compute the answer, commit nothing."""
        return bool(self.try_) and self.action in TRY_ACTIONS

    def deadline(self) -> datetime:
        """timestamp + ttl (DEFAULT_TTL without one). OverflowError beyond year 9999."""
        return (self.ttl or parse_duration(DEFAULT_TTL)).add_to(self.timestamp)

    def to_json(self) -> dict[str, Any]:
        """The wire object (LTS shape keys; release-only keys kept when set), absent ones omitted."""
        out: dict[str, Any] = {}
        if self.network_id is not None:
            out["networkId"] = self.network_id
        out |= {"version": self.version, "action": self.action}
        if self.domain is not None:
            out["domain"] = self.domain
        if self.location is not None:
            out["location"] = dict(self.location)
        out |= {"bapId": self.bap_id, "bapUri": self.bap_uri}
        if self.bpp_id is not None:
            out["bppId"] = self.bpp_id
        if self.bpp_uri is not None:
            out["bppUri"] = self.bpp_uri
        out |= {"transactionId": self.transaction_id, "messageId": self.message_id,
                "timestamp": render_timestamp(self.timestamp)}
        if self.ttl is not None:
            out["ttl"] = str(self.ttl)
        if self.key is not None:
            out["key"] = self.key
        if self.schema_context:
            out["schemaContext"] = list(self.schema_context)
        if self.request_digest is not None:
            out["requestDigest"] = {"digest": self.request_digest}
        if self.try_ is not None:
            out["try"] = self.try_
        if self.sender_id is not None:
            out["senderId"] = self.sender_id
        if self.receiver_id is not None:
            out["receiverId"] = self.receiver_id
        return out


# ------------------------------------------------------------------------------------------ read


def context_from_json(obj: Any, *, action: str | None = None, path: str = "context") -> Context:
    """Rules 1 and 2: a Context from the decoded `context` value, or V2Error."""
    if obj is None:
        raise V2Error("is missing", path)
    if not isinstance(obj, dict):
        raise V2Error("must be an object", path)
    version = _text(obj, "version", path)
    if version != VERSION:
        raise V2Error(f"version {version[:20]!r} is not supported on this path; it speaks {VERSION} "
                      "(v1.1.0 is served under /beckn/)", f"{path}.version", V2Code.VERSION_NOT_SUPPORTED)
    got_action = _text(obj, "action", path)
    if action is not None and got_action != action:
        raise V2Error(f"action {got_action[:40]!r} was posted to the {action!r} endpoint", f"{path}.action")
    stamp = _text(obj, "timestamp", path)
    try:
        timestamp = parse_timestamp(stamp)
    except ValueError as exc:
        raise V2Error(str(exc), f"{path}.timestamp") from None
    ttl_text = _text(obj, "ttl", path, required=False)
    try:
        ttl = None if ttl_text is None else parse_duration(ttl_text)
    except ValueError as exc:
        raise V2Error(str(exc), f"{path}.ttl") from None
    network = _text(obj, "networkId", path, required=False)
    if network is not None and (len(network) > MAX_ID_CHARS or not _NETWORK.fullmatch(network)):
        raise V2Error("must be {namespace}/{registry}[@{host}]", f"{path}.networkId")
    schema_context = obj.get("schemaContext")
    if schema_context is not None:
        if not isinstance(schema_context, list) or len(schema_context) > MAX_SCHEMA_CONTEXTS:
            raise V2Error(f"must be an array of at most {MAX_SCHEMA_CONTEXTS} URIs", f"{path}.schemaContext")
        for i, uri in enumerate(schema_context):
            _check_uri(uri, f"{path}.schemaContext[{i}]")
    digest = obj.get("requestDigest")
    if digest is not None:
        if not isinstance(digest, dict) or not isinstance(digest.get("digest"), str) \
                or not _DIGEST.fullmatch(digest["digest"]) or len(digest["digest"]) > 200:
            raise V2Error('must be {"digest": "BLAKE-512=<base64>"}', f"{path}.requestDigest")
    try_ = obj.get("try")
    if try_ is not None and not isinstance(try_, bool):
        raise V2Error("must be a boolean", f"{path}.try")
    location = obj.get("location")
    if location is not None and not isinstance(location, dict):
        raise V2Error("must be an object", f"{path}.location")
    cursor = _page_cursor(obj.get("tags"), f"{path}.tags")
    return Context(
        action=got_action, version=version,
        bap_id=_ident(obj, "bapId", path), bap_uri=_uri(obj, "bapUri", path, callback=True),
        bpp_id=_ident(obj, "bppId", path, required=False), bpp_uri=_uri(obj, "bppUri", path, required=False),
        transaction_id=_ident(obj, "transactionId", path), message_id=_ident(obj, "messageId", path),
        timestamp=timestamp, ttl=ttl, network_id=network, key=_text(obj, "key", path, required=False),
        schema_context=tuple(schema_context or ()), request_digest=digest["digest"] if digest else None,
        domain=_text(obj, "domain", path, required=False), location=location, try_=try_,
        sender_id=_ident(obj, "senderId", path, required=False),
        receiver_id=_ident(obj, "receiverId", path, required=False), page_cursor=cursor,
    )


def _page_cursor(tags: Any, path: str) -> str | None:
    """The devkit's pull pagination: context.tags [{descriptor {code "pagination"}, list
    [{descriptor {code "pageCursor"}, value}]}] (BecknPageInfo); other tags are ignored."""
    if not isinstance(tags, list):
        return None
    for i, group in enumerate(tags[:20]):
        if not isinstance(group, dict) or (group.get("descriptor") or {}).get("code") != "pagination":
            continue
        for j, item in enumerate(group.get("list") or []):
            if isinstance(item, dict) and (item.get("descriptor") or {}).get("code") == "pageCursor":
                value = item.get("value")
                if not isinstance(value, str) or not 0 < len(value) <= 100 or _CONTROL.search(value):
                    raise V2Error("must be 1 to 100 printable characters", f"{path}[{i}].list[{j}].value")
                return value
    return None


def parse_context(obj: Any, *, action: str, bpp_id: str, now: datetime, skew: timedelta = timedelta(seconds=5),
                  networks: Collection[str] | None = None, path: str = "context") -> Context:
    """Rules 1-3: the context of a request posted to this BPP's `action` endpoint, or V2Error."""
    if action not in BPP_ACTIONS:
        raise ValueError(f"{action!r} is not a v2 action this BPP serves")
    _aware(now)
    ctx = context_from_json(obj, action=action, path=path)
    bad = V2Code.CONTEXT_ERROR
    if ctx.bpp_id is None and action != "discover":
        raise V2Error("is missing", f"{path}.bppId", bad)
    if ctx.bpp_id is not None and ctx.bpp_id != bpp_id:
        raise V2Error(f"{ctx.bpp_id[:60]!r} is not this BPP ({bpp_id})", f"{path}.bppId", bad)
    if ctx.receiver_id is not None and ctx.receiver_id != bpp_id:
        raise V2Error(f"{ctx.receiver_id[:60]!r} is not this BPP ({bpp_id})", f"{path}.receiverId", bad)
    if ctx.sender_id is not None and ctx.sender_id != ctx.bap_id:
        raise V2Error("must be the bapId of a request a BAP sends", f"{path}.senderId", bad)
    if networks:
        if ctx.network_id not in networks:
            what = "is missing" if ctx.network_id is None else f"{ctx.network_id[:60]!r} is not served here"
            raise V2Error(f"{what} (served: {', '.join(sorted(networks))})", f"{path}.networkId", bad)
    if ctx.timestamp > now + skew:
        raise V2Error(f"{render_timestamp(ctx.timestamp)} is in the future", f"{path}.timestamp", bad)
    try:
        deadline = ctx.deadline()
    except OverflowError:
        raise V2Error(f"{ctx.ttl} is too long", f"{path}.ttl", bad) from None
    if deadline < now:
        raise V2Error(f"the request expired at {render_timestamp(deadline)} "
                      f"(timestamp + {ctx.ttl or DEFAULT_TTL})", f"{path}.ttl" if ctx.ttl else f"{path}.timestamp", bad)
    return ctx


def _text(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise V2Error("is missing", f"{path}.{name}")
        return None
    if not isinstance(value, str):
        raise V2Error("must be a string", f"{path}.{name}")
    if len(value) > MAX_URI_CHARS:
        raise V2Error(f"is longer than {MAX_URI_CHARS} characters", f"{path}.{name}")
    if required and not value:
        raise V2Error("must not be empty", f"{path}.{name}")
    return value


def _ident(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> Any:
    value = _text(obj, name, path, required=required)
    if value is None:
        return None
    if not value or len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        raise V2Error(f"must be 1 to {MAX_ID_CHARS} characters without control characters", f"{path}.{name}")
    return value


def _check_uri(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise V2Error("must be a string", where)
    if len(value) > MAX_URI_CHARS or _WHITESPACE.search(value) or _CONTROL.search(value):
        raise V2Error(f"must be a URL of at most {MAX_URI_CHARS} characters without spaces", where)
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise V2Error(f"{value[:80]!r} is not a valid URL", where) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise V2Error(f"{value[:80]!r} is not an absolute http(s) URL", where)
    if parts.username is not None or parts.password is not None:
        raise V2Error("must not carry credentials", where)
    return value


def _uri(obj: dict[str, Any], name: str, path: str, *, required: bool = True, callback: bool = False) -> Any:
    value = _text(obj, name, path, required=required)
    if value is None:
        return None
    where = f"{path}.{name}"
    _check_uri(value, where)
    if callback:  # we POST to it: one reading only
        try:
            parse_base(value)
        except UnsafeURL as exc:
            raise V2Error(f"{value[:80]!r} is not a safe callback URL: it {exc}", where) from None
    return value


# ------------------------------------------------------------------------------------- callbacks


def callback_context(request: Context, *, now: datetime, bpp_id: str, bpp_uri: str,
                     schema_context: tuple[str, ...] = (), request_digest: str | None = None) -> Context:
    """The context of the callback answering `request`: `on_<action>`, the same transactionId and
    messageId, timestamp `now`, our bppId/bppUri, the packs the answer uses, the digest of the
    request (RequestDigest), no key and none of the release branch's sender keys."""
    action = CALLBACK_ACTIONS.get(request.action)
    if action is None:
        raise ValueError(f"{request.action!r} has no callback")
    return dataclasses.replace(request, action=action, bpp_id=bpp_id, bpp_uri=bpp_uri, timestamp=_aware(now),
                               key=None, schema_context=schema_context, request_digest=request_digest,
                               try_=None, sender_id=None, receiver_id=None, page_cursor=None)


def unsolicited_context(previous: Context, *, action: str, message_id: str, now: datetime, bpp_id: str,
                        bpp_uri: str, ttl: Duration, schema_context: tuple[str, ...] = ()) -> Context:
    """A push in `previous`'s transaction (on_status, on_update…) with a new messageId."""
    if action not in CALLBACK_ACTIONS.values():
        raise ValueError(f"{action!r} is not a callback action")
    if not message_id or message_id == previous.message_id:
        raise ValueError("an unsolicited callback needs a new messageId")
    return dataclasses.replace(previous, action=action, message_id=message_id, bpp_id=bpp_id, bpp_uri=bpp_uri,
                               timestamp=_aware(now), ttl=ttl, key=None, schema_context=schema_context,
                               request_digest=None, try_=None, sender_id=None, receiver_id=None, page_cursor=None)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be an aware datetime")
    return now
