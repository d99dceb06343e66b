"""Subscription/Notification function set (`sub`): Subscription, SubscriptionList, Notification.

A Notification carries the changed resource as `<Resource xsi:type="DERControlList">…`: the
schema types that element as the abstract Resource, so the concrete type travels in xsi:type.
The codec renders and parses plain models; `render_notification` and `parse_notification` wrap
it for that one polymorphic element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from server.sep2 import codec
from server.sep2.models import NS, Resource
from server.sep2.types import AnyURI, Int48, StringType, UInt8, UInt32, attr, child, children, elem

T = TypeVar("T")

String16 = StringType("String16", 16)

XSI = "http://www.w3.org/2001/XMLSchema-instance"

# Notification.status (the 2018 schema's list).
STATUS_DEFAULT = 0
STATUS_CANCELLED = 1  # subscription cancelled, no additional information
STATUS_MOVED = 2
STATUS_DEFINITION_CHANGED = 3
STATUS_DELETED = 4  # subscription cancelled: the resource was deleted

# SubscribableType on what the server notifies of: non-conditional subscriptions (no Condition).
SUBSCRIBABLE = 1

# Subscription.encoding: 0 application/sep+xml, 1 application/sep-exi (never offered here).
ENCODING_XML = 0


@dataclass(kw_only=True, slots=True)
class Condition:
    """Notify only when `attributeIdentifier` (0: ReadingValue) leaves [lower, upper]."""

    attribute_identifier: int = elem("attributeIdentifier", UInt8, required=True, default=0)
    lower_threshold: int = elem("lowerThreshold", Int48, required=True, default=0)
    upper_threshold: int = elem("upperThreshold", Int48, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class Subscription(Resource):
    subscribed_resource: str = elem("subscribedResource", AnyURI, required=True, default="")
    condition: Condition | None = child("Condition", Condition)
    encoding: int = elem("encoding", UInt8, required=True, default=ENCODING_XML)
    level: str = elem("level", String16, required=True, default="+S1")
    limit: int = elem("limit", UInt32, required=True, default=1)
    notification_uri: str = elem("notificationURI", AnyURI, required=True, default="")


@dataclass(kw_only=True, slots=True)
class SubscriptionList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    subscriptions: list[Subscription] = children("Subscription", Subscription)


@dataclass(kw_only=True, slots=True)
class Notification(Resource):
    """The fields of a Notification around its Resource (which `render_notification` places)."""

    subscribed_resource: str = elem("subscribedResource", AnyURI, required=True, default="")
    new_resource_uri: str | None = elem("newResourceURI", AnyURI)
    status: int = elem("status", UInt8, required=True, default=STATUS_DEFAULT)
    subscription_uri: str = elem("subscriptionURI", AnyURI, required=True, default="")


def render_notification(n: Notification, resource: Any | None) -> bytes:
    """The Notification document, with `resource` (a model, or None) as its typed Resource."""
    head = f'<Notification xmlns="{NS}" xmlns:xsi="{XSI}"'
    if n.href:
        head += f" href={quoteattr(n.href)}"
    parts = [head, ">", f"<subscribedResource>{escape(n.subscribed_resource)}</subscribedResource>"]
    if n.new_resource_uri is not None:
        parts.append(f"<newResourceURI>{escape(n.new_resource_uri)}</newResourceURI>")
    if resource is not None:
        inner = codec.render(resource, root="Resource").decode("utf-8")
        prefix = f'<Resource xmlns="{NS}"'
        assert inner.startswith(prefix)  # codec.render's fixed head
        parts.append(f'<Resource xsi:type="{type(resource).__name__}"' + inner[len(prefix):])
    parts.append(f"<status>{UInt8.render(n.status)}</status>")
    parts.append(f"<subscriptionURI>{escape(n.subscription_uri)}</subscriptionURI></Notification>")
    return "".join(parts).encode("utf-8")


def parse_notification(body: bytes, models: tuple[type, ...], *,
                       max_bytes: int = codec.DEFAULT_MAX_BYTES) -> tuple[Notification, Any | None]:
    """A Notification and its Resource parsed as the model its xsi:type names (one of `models`);
    DecodeError when the type is not one of them."""
    if len(body) > max_bytes:
        raise codec.DecodeError(f"body larger than {max_bytes} bytes")
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError as exc:
        raise codec.DecodeError(f"malformed XML: {exc.msg}") from None
    resource = None
    found = root.find(f"{{{NS}}}Resource")
    if found is not None:
        root.remove(found)
        type_name = (found.get(f"{{{XSI}}}type") or "").rpartition(":")[2]
        model = next((m for m in models if m.__name__ == type_name), None)
        if model is None:
            raise codec.DecodeError(f"Notification Resource of type {type_name or '(none)'} is not expected here")
        found.tag = f"{{{NS}}}{type_name}"
        del found.attrib[f"{{{XSI}}}type"]
        resource = codec.parse(etree.tostring(found), model, max_bytes=max_bytes)
    return codec.parse(etree.tostring(root), Notification, max_bytes=max_bytes), resource


@dataclass(kw_only=True, slots=True)
class NotificationList(Resource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    notifications: list[Notification] = children("Notification", Notification)
