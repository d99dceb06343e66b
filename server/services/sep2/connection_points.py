"""CSIP-AUS ConnectionPoint (`/edev/{id}/cp`): the site an EndDevice is connected at, by its
connection point id — in Australia the NMI (server/sep2/csipaus.py).

Who. The device itself and the aggregator that manages it read it and set it (PUT or POST, the
same: the resource's URI is fixed; 201 + Location the first time, 204 + Location after, as
CSIP-AUS clients read the Location back); anyone else is told it does not exist (404). Operators
set, clear and list them through the admin API and the CLI.

Rules. The id must be an NMI: 10 characters of digits and capital letters other than I and O,
or 11 with its checksum digit (`nmi_problem`); anything else is refused with 400, reasonCode 1
(invalid values), and nothing changes. Before any is set, GET answers 404. Devices of one site
share an id: that is what makes them a site for operators (DOE controls for a connection point).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.db import access, repo
from server.scope import Scope
from server.sep2 import uris
from server.sep2.csipaus import ConnectionPoint, nmi_problem
from server.services.errors import Invalid, NotFound
from server.services.sep2.edev import visible_device


def checked_id(value: Any, name: str = "connectionPointId") -> str:
    """A connection point id (an NMI), or Invalid naming what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{name} is required: the site's NMI, e.g. 4102000000 or 41020000002 with its checksum digit")
    text = value.strip()
    problem = nmi_problem(text)
    if problem is not None:
        raise Invalid(f"{name}: {problem}")
    return text


def connection_point(db: repo.Reader, scope: Scope, device_id: int) -> ConnectionPoint:
    device = visible_device(db, scope, device_id)
    if device.connection_point_id is None:
        raise NotFound("no ConnectionPoint has been set for this EndDevice")
    return ConnectionPoint(href=uris.href(uris.CP, edev_id=device_id), connection_point_id=device.connection_point_id)


def put(session: Session, scope: Scope, device_id: int, posted: ConnectionPoint) -> bool:
    """A device or its aggregator sets the ConnectionPoint; True when there was none before."""
    device = repo.get_device(session, scope, device_id)
    if device is None:
        raise NotFound("no such EndDevice")
    value = checked_id(posted.posted_id())
    created = device.connection_point_id is None
    device.connection_point_id = value
    return created


# ------------------------------------------------------------------------------------ operators


def set_for_device(session: Session, device_id: int, value: Any) -> dict[str, Any]:
    """An operator sets (a string) or clears (None) a device's connection point id."""
    device = repo.get_device(session, Scope.operator(), device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    device.connection_point_id = None if value is None else checked_id(value, "'connection_point_id'")
    return {"device_id": device.id, "connection_point_id": device.connection_point_id}


def list_connection_points(session: Session, start: int = 0, limit: int = 100) -> dict[str, Any]:
    """Every connection point with the devices at it, by id."""
    total, page = access.connection_points(session, start, limit)
    return {"all": total, "connection_points": [{"connection_point_id": cp, "device_ids": ids} for cp, ids in page]}


def devices_at(session: Session, value: Any, name: str = "connection_point_id") -> list[int]:
    """The devices at a connection point (an operator's target); NotFound when none is there."""
    cp = checked_id(value, f"'{name}'")
    ids = access.devices_at(session, cp)
    if not ids:
        raise NotFound(f"no device is at connection point {cp}")
    return ids
