"""Subscription function set (`sub`): a client subscribes to a resource it can read, under the
EndDevice that resource belongs to, and is notified of its changes (server.services.sep2.notify).

Rules:
  * A subscription lives under `/edev/{id}/sub` of an EndDevice the client can see, and only a
    client that can read the resource may make it: a device for itself, an aggregator for the
    devices in its scope — never for others (another's device is not found, 404).
  * Subscribable here: the EndDeviceList, the EndDevice, its FunctionSetAssignmentsList, each FSA's DERProgramList,
    each DER program's DERControlList, ActiveDERControlList and DefaultDERControl, and the four DER
    documents (the DERList is a plain List in the schema: not subscribable). Anything else is refused (400) — a client must not believe it will
    be told of changes nobody will tell it of.
  * Subscribing again to the same resource (same client, same EndDevice) updates the existing
    subscription: same id, same Location, never a duplicate.
  * `Condition` is not supported on these resources (they have no reading values): refused with
    reasonCode 3, as the standard asks. Encoding must be 0 (XML; EXI is not offered). `limit` is
    kept (at most MAX_LIMIT list items per notification).
  * notificationURI must be absolute https:// to a public address; plain http, loopback and
    private ranges only where the operator allows them (Settings.notification_allow). Host names
    are resolved now and the address is checked again when sending (no DNS rebinding).
  * Each client sees and deletes only its own subscriptions.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from server.db import sub as store
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.paging import Page
from server.sep2.sub import ENCODING_XML, Subscription, SubscriptionList
from server.services.errors import Invalid, NotFound
from server.services.sep2 import der, derp, fsa
from server.services.sep2.edev import visible_device

MAX_LIMIT = uris.MAX_LIMIT
MAX_SUBSCRIPTIONS_PER_DEVICE = 100
ALLOWANCES = ("http", "loopback", "private")


class ConditionNotSupported(Invalid):
    reason_code = 3  # 2030.5 Error: conditional subscription field not supported


class TooMany(Invalid):
    reason_code = 2  # resource limit reached


@dataclass(frozen=True, slots=True)
class Target:
    """What a subscribedResource names, parsed."""

    kind: str  # one of server.db.sub.TARGETS
    device_id: int
    program_id: int | None = None
    fsa_id: int | None = None
    der_doc: str | None = None


_ID = r"([0-9]{1,10})"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern)) for kind, pattern in (
        ("edev_list", r"/edev"),
        ("edev", rf"/edev/{_ID}"),
        ("fsa_list", rf"/edev/{_ID}/fsa"),
        ("derp_list", rf"/edev/{_ID}/fsa/{_ID}/derp"),
        ("derc_list", rf"/edev/{_ID}/derp/{_ID}/derc"),
        ("actderc", rf"/edev/{_ID}/derp/{_ID}/actderc"),
        ("dderc", rf"/edev/{_ID}/derp/{_ID}/dderc"),
        ("der_doc", rf"/edev/{_ID}/der/{_ID}/(dercap|derg|ders|dera)"),
    )
)


def parse_target(resource: str, edev_id: int) -> Target:
    """The target a subscribedResource names (a path, or an absolute URI of this server's; a
    query string is ignored, as the standard says for lists); Invalid when it is none we notify.
    The EndDeviceList is kept as a target of the EndDevice it was subscribed under (`edev_id`)."""
    parts = urlsplit(resource.strip())
    path = parts.path.rstrip("/") if parts.path != "/" else parts.path
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        ids = [int(g) for g in m.groups() if g.isdigit()]
        if kind == "edev_list":
            return Target(kind, edev_id)
        if kind in ("derc_list", "actderc", "dderc"):
            return Target(kind, ids[0], program_id=ids[1])
        if kind == "derp_list":
            return Target(kind, ids[0], fsa_id=ids[1])
        if kind == "der_doc":
            if ids[1] != der.DER_ID:
                raise NotFound("no such DER")
            return Target(kind, ids[0], der_doc=m.group(3))
        return Target(kind, ids[0])
    raise Invalid(f"subscribedResource {resource[:80]!r} is not a resource this server notifies of "
                  "(EndDevice, FunctionSetAssignmentsList, DERProgramList, DERControlList, "
                  "ActiveDERControlList, DefaultDERControl, DER documents)")


def canonical(target: Target) -> str:
    """The target's href as this server writes it (what Notifications name as subscribedResource)."""
    t, d = target, target.device_id
    if t.kind == "edev":
        return uris.edev(d)
    if t.kind == "edev_list":
        return uris.EDEV_LIST
    if t.kind == "fsa_list":
        return uris.href(uris.FSA_LIST, edev_id=d)
    if t.kind == "derp_list":
        return uris.href(uris.DERP_LIST, edev_id=d, fsa_id=t.fsa_id or 0)
    if t.kind in ("derc_list", "actderc", "dderc"):
        template = {"derc_list": uris.DERC_LIST, "actderc": uris.ACTDERC, "dderc": uris.DDERC}[t.kind]
        return uris.href(template, edev_id=d, derp_id=t.program_id or 0)
    return uris.href(uris.DER, edev_id=d, der_id=der.DER_ID) + f"/{t.der_doc}"


def _check_readable(db: Reader, scope: Scope, target: Target) -> None:
    """NotFound unless `scope` can read the target (the same checks as its GET)."""
    d = target.device_id
    visible_device(db, scope, d)
    if target.kind == "derp_list":
        fsa.fsa(db, scope, d, target.fsa_id or 0)
    elif target.kind in ("derc_list", "actderc", "dderc"):
        derp.der_program(db, scope, d, target.program_id or 0)


# ------------------------------------------------------------------------ notification URIs


def check_address(address: str, allow: Collection[str]) -> None:
    """Invalid unless notifications may go to this IP address under the operator's allowances."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_loopback:
        if "loopback" not in allow:
            raise Invalid("notificationURI must not name a loopback address")
        return
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        raise Invalid(f"notificationURI must not name {ip} (unspecified, multicast, link-local or reserved)")
    if ip.is_private and "private" not in allow:
        raise Invalid("notificationURI must not name a private address")


def receiver_of(uri: str, allow: Collection[str], *, resolve: bool = True) -> str:
    """The receiver (scheme://host:port) of an acceptable notificationURI; Invalid otherwise."""
    if len(uri) > 255:
        raise Invalid("notificationURI must be at most 255 characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise Invalid("notificationURI is not a valid URI") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise Invalid("notificationURI must be an absolute https:// URI")
    if scheme == "http" and "http" not in allow:
        raise Invalid("notificationURI must use https (plain http is not allowed here)")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise Invalid("notificationURI must name a host, without user information")
    if parts.fragment:
        raise Invalid("notificationURI must not have a fragment")
    host = parts.hostname.lower()
    port = port or (443 if scheme == "https" else 80)
    if resolve:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise Invalid(f"notificationURI's host {host[:60]!r} cannot be resolved") from None
        for info in infos:
            check_address(str(info[4][0]), allow)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


# ------------------------------------------------------------------------------- client side


def subscribe(session: Session, scope: Scope, edev_id: int, posted: Subscription, now: int,
              allow: Collection[str], *, base_uri: str = "") -> tuple[int, bool]:
    """Store (or update) a subscription: (its id, whether it is new). `base_uri`: this server as
    the client addressed it (https://host[:port]), for the absolute subscriptionURI of its
    Notifications."""
    visible_device(session, scope, edev_id)
    # An aggregator may keep its subscriptions to any device in its scope under one EndDevice
    # (CSIP-AUS: its own); the resource must be readable by it all the same.
    target = parse_target(posted.subscribed_resource, edev_id)
    _check_readable(session, scope, target)
    if posted.condition is not None:
        raise ConditionNotSupported("a Condition is not supported on this resource")
    if posted.encoding != ENCODING_XML:
        raise Invalid("encoding must be 0 (application/sep+xml)")
    if posted.limit < 1:
        raise Invalid("limit must be at least 1")
    receiver = receiver_of(posted.notification_uri, allow)
    resource = canonical(target)
    values: dict[str, Any] = {
        "resource": resource, "target": target.kind, "target_device_id": target.device_id,
        "program_id": target.program_id, "fsa_id": target.fsa_id, "der_doc": target.der_doc,
        "notification_uri": posted.notification_uri, "receiver": receiver,
        "limit": min(posted.limit, MAX_LIMIT), "level": posted.level, "encoding": posted.encoding,
        "base_uri": base_uri[:255],
    }
    assert scope.lfdi is not None  # clients only
    row = store.find(session, edev_id, scope.lfdi, resource)
    if row is not None:
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_time = now
        return row.id, False
    total, _ = store.of_device(session, edev_id, 0, 0)
    if total >= MAX_SUBSCRIPTIONS_PER_DEVICE:
        raise TooMany(f"an EndDevice holds at most {MAX_SUBSCRIPTIONS_PER_DEVICE} subscriptions")
    row = store.Subscription(device_id=edev_id, subscriber_lfdi=scope.lfdi, created_time=now, updated_time=now,
                             **values)
    session.add(row)
    session.flush()
    return row.id, True


def _model(row: Any) -> Subscription:
    return Subscription(href=uris.href(uris.SUB, edev_id=row.device_id, sub_id=row.id),
                        subscribed_resource=row.resource, encoding=row.encoding, level=row.level,
                        limit=row.limit, notification_uri=row.notification_uri)


def subscription_list(db: Reader, scope: Scope, edev_id: int, page: Page, poll_rate: int) -> SubscriptionList:
    """The client's own subscriptions under a device it can see."""
    visible_device(db, scope, edev_id)
    rows = [r for r in store.of_device(db, edev_id, 0, MAX_SUBSCRIPTIONS_PER_DEVICE)[1]
            if r.subscriber_lfdi == scope.lfdi]
    shown = rows[page.start:page.start + page.limit]
    return SubscriptionList(href=uris.href(uris.SUB_LIST, edev_id=edev_id), all=len(rows), results=len(shown),
                            poll_rate=poll_rate, subscriptions=[_model(r) for r in shown])


def subscription(db: Reader, scope: Scope, edev_id: int, sub_id: int) -> Subscription:
    visible_device(db, scope, edev_id)
    row = store.one(db, edev_id, sub_id)
    if row is None or row.subscriber_lfdi != scope.lfdi:
        raise NotFound("no such Subscription")
    return _model(row)


def unsubscribe(session: Session, scope: Scope, edev_id: int, sub_id: int) -> None:
    subscription(session, scope, edev_id, sub_id)
    store.delete_one(session, edev_id, sub_id)
