"""EndDevice function set (`edev`): EndDevice, EndDeviceList and Registration from the stored
devices (server.db.models.Device: an ORM object or a Core Row with the same columns)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.sep2 import uris
from server.sep2.models import EndDevice, EndDeviceList, Registration
from server.sep2.sub import SUBSCRIBABLE
from server.sep2.types import ListLinkValue


def end_device(device: Any, fsa_count: int = 1, *, subscriptions: bool = True) -> EndDevice:
    """A device as the 2030.5 EndDevice: links to its one DER and its `fsa_count`
    FunctionSetAssignments, to its Registration when an operator gave it a PIN, to its CSIP-AUS
    ConnectionPoint, and — with `subscriptions`, for the reader's own EndDevice — to the
    SubscriptionList where the reader keeps its subscriptions (an aggregator keeps them under
    its own EndDevice, whatever devices they are about; CSIP-AUS expects one such list)."""
    ids = {"edev_id": device.id}
    return EndDevice(
        href=uris.edev(device.id),
        subscribable=SUBSCRIBABLE,
        der_list_link=ListLinkValue(uris.href(uris.DER_LIST, **ids), 1),
        device_category=device.device_category,
        lfdi=device.lfdi,
        log_event_list_link=ListLinkValue(uris.href(uris.LEL_LIST, **ids)),
        sfdi=device.sfdi,
        changed_time=device.changed_time,
        enabled=device.enabled,
        function_set_assignments_list_link=ListLinkValue(uris.href(uris.FSA_LIST, **ids), fsa_count),
        post_rate=device.post_rate,
        registration_link=uris.edev_rg(device.id) if device.pin is not None else None,
        subscription_list_link=ListLinkValue(uris.href(uris.SUB_LIST, **ids)) if subscriptions else None,
        connection_point_link=uris.href(uris.CP, **ids),
    )


def end_device_list(devices: Sequence[Any], all_: int, poll_rate: int,
                    fsa_counts: Mapping[int, int] | None = None, reader_lfdi: str | None = None) -> EndDeviceList:
    """A page of devices out of `all_` (`fsa_counts`: each one's number of FunctionSetAssignments;
    `reader_lfdi`: whose list it is, the one EndDevice that links a SubscriptionList; None: all do)."""
    return EndDeviceList(
        href=uris.EDEV_LIST,
        subscribable=SUBSCRIBABLE,
        all=all_,
        results=len(devices),
        poll_rate=poll_rate,
        end_devices=[
            end_device(d, (fsa_counts or {}).get(d.id, 1), subscriptions=reader_lfdi in (None, d.lfdi))
            for d in devices
        ],
    )


def registration(device: Any, poll_rate: int) -> Registration:
    """A device's Registration: the PIN an operator gave it and when (pin, pin_time)."""
    return Registration(
        href=uris.edev_rg(device.id),
        poll_rate=poll_rate,
        date_time_registered=device.pin_time,
        pin=device.pin,
    )
