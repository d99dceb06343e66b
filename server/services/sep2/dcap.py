"""DeviceCapability function set (`/dcap`): the links a client discovers everything from."""

from __future__ import annotations

from server.db import repo
from server.scope import Scope
from server.sep2 import uris
from server.sep2.models import DeviceCapability, ListLinkValue


def device_capability(db: repo.Reader, scope: Scope, poll_rate: int) -> DeviceCapability:
    return DeviceCapability(
        href=uris.DCAP,
        poll_rate=poll_rate,
        time_link=uris.TM,
        usage_point_list_link=ListLinkValue(uris.UPT_LIST),
        end_device_list_link=ListLinkValue(uris.EDEV_LIST, repo.count_devices(db, scope)),
        # No counts on the metering links: /dcap is cached with the "sep2" family, and a count of
        # mirrors would go stale with every new one.
        mirror_usage_point_list_link=ListLinkValue(uris.MUP_LIST),
    )
