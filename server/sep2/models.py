"""Typed models of the 2030.5 resources the server speaks, fields in schema order.

Only the elements the server uses are declared; the codec rejects undeclared elements on input,
so a model here is also the whitelist of what a client may send.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.types import (
    CSIPAUS_NS,
    AnyURI,
    Boolean,
    HexBinary32,
    HexBinary160,
    ListLinkValue,
    PINType,
    SFDIType,
    TimeOffsetType,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    attr,
    children,
    elem,
    link,
)

NS = "urn:ieee:std:2030.5:ns"
NS_2013 = "http://ieee.org/2030.5"
MEDIA_TYPE = "application/sep+xml"


@dataclass(kw_only=True, slots=True)
class Resource:
    href: str | None = attr("href", AnyURI)


@dataclass(kw_only=True, slots=True)
class SubscribableResource(Resource):
    subscribable: int | None = attr("subscribable", UInt8)


@dataclass(kw_only=True, slots=True)
class DeviceCapability(Resource):
    """`/dcap`: the entry point a client discovers everything else from."""

    poll_rate: int | None = attr("pollRate", UInt32)
    time_link: str | None = link("TimeLink")
    usage_point_list_link: ListLinkValue | None = link("UsagePointListLink", list_link=True)
    end_device_list_link: ListLinkValue | None = link("EndDeviceListLink", list_link=True)
    mirror_usage_point_list_link: ListLinkValue | None = link(
        "MirrorUsagePointListLink", list_link=True
    )


@dataclass(kw_only=True, slots=True)
class Time(Resource):
    """`/tm`: the server's clock and the configured zone's offsets (all seconds, UTC epoch)."""

    poll_rate: int | None = attr("pollRate", UInt32)
    current_time: int = elem("currentTime", TimeType, required=True, default=0)
    dst_end_time: int = elem("dstEndTime", TimeType, required=True, default=0)
    dst_offset: int = elem("dstOffset", TimeOffsetType, required=True, default=0)
    dst_start_time: int = elem("dstStartTime", TimeType, required=True, default=0)
    local_time: int | None = elem("localTime", TimeType)
    quality: int = elem("quality", UInt8, required=True, default=7)
    tz_offset: int = elem("tzOffset", TimeOffsetType, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class EndDevice(SubscribableResource):
    """An EndDevice as the server serves it and as a client posts it to register."""

    der_list_link: ListLinkValue | None = link("DERListLink", list_link=True)
    device_category: str | None = elem("deviceCategory", HexBinary32)
    lfdi: str | None = elem("lFDI", HexBinary160)
    log_event_list_link: ListLinkValue | None = link("LogEventListLink", list_link=True)
    sfdi: int = elem("sFDI", SFDIType, required=True, default=0)
    changed_time: int = elem("changedTime", TimeType, required=True, default=0)
    enabled: bool | None = elem("enabled", Boolean)
    function_set_assignments_list_link: ListLinkValue | None = link(
        "FunctionSetAssignmentsListLink", list_link=True
    )
    post_rate: int | None = elem("postRate", UInt32)
    registration_link: str | None = link("RegistrationLink")
    subscription_list_link: ListLinkValue | None = link("SubscriptionListLink", list_link=True)
    # CSIP-AUS (server/sep2/csipaus.py): where the device's ConnectionPoint (its NMI) is.
    connection_point_link: str | None = link("ConnectionPointLink", ns=CSIPAUS_NS)


@dataclass(kw_only=True, slots=True)
class EndDeviceList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    end_devices: list[EndDevice] = children("EndDevice", EndDevice)


@dataclass(kw_only=True, slots=True)
class Registration(Resource):
    poll_rate: int | None = attr("pollRate", UInt32)
    date_time_registered: int = elem("dateTimeRegistered", TimeType, required=True, default=0)
    pin: int = elem("pIN", PINType, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class Error:
    """The body of every 4xx/5xx answer. reasonCode: 0 invalid request format, 1 invalid values,
    2 resource limit reached, 3 conditional subscription not supported, 4 max request frequency."""

    max_retry_duration: int | None = elem("maxRetryDuration", UInt16)
    reason_code: int = elem("reasonCode", UInt16, required=True, default=0)


# Root element name of each model (the class name, as in the schema).
ROOT_NAMES: dict[type, str] = {
    cls: cls.__name__ for cls in (DeviceCapability, Time, EndDevice, EndDeviceList, Registration, Error)
}

__all__ = [
    "NS",
    "NS_2013",
    "MEDIA_TYPE",
    "DeviceCapability",
    "Time",
    "EndDevice",
    "EndDeviceList",
    "Registration",
    "Error",
    "ListLinkValue",
]
