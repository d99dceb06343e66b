"""What an enrolled device offers: a power curve or an objective (programs.curves), checked for
shape when a command is made; whether the device can honour it (its ratings) is checked when the
enrollment is made or its offer changed (server.services.flex.enrollments)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from programs.curves import Objective, parse_objective, parse_power_points, power_to_reduction
from server.services.flex.command_errors import InvalidCommand


_POINT = re.compile(r"power curve point (\d+)")
_OBJECTIVE_KEY = re.compile(r"objective\.(\w+)")


def offer_error(exc: ValueError | OverflowError, field: str = "offer") -> InvalidCommand:
    """An offer's curve or objective refused by the domain (programs.curves), with the field: its
    messages name a point as "power curve point j" and an objective's key as "objective.key"."""
    if isinstance(exc, OverflowError):  # an integer beyond the float range
        return InvalidCommand(field, f"{field}: a number is too large (the largest is about 1.8e308)")
    message = str(exc)
    point, key = _POINT.search(message), _OBJECTIVE_KEY.search(message)
    where = (f"{field}.power[{point.group(1)}]" if point else f"{field}.objective.{key.group(1)}" if key else field)
    return InvalidCommand(where, f"{field}: {message}")


@dataclass(frozen=True)
class Offer:
    """What a device offers: a power curve (price → kW, kW negative = consumption) or an objective
    (programs.curves), checked for shape; `text` is its JSON as stored and shown. Whether the
    device can honour it (its ratings) is checked when the enrollment is made."""

    text: str
    power: tuple[tuple[float, float], ...] | None = None
    objective: Objective | None = None

    def json(self) -> dict[str, Any]:
        return json.loads(self.text)


def power_offer(points: Any, field: str = "offer") -> Offer:
    """An offer of a power curve: [[price, kW], …] or Beckn [{"price", "powerKW"}, …]."""
    if not isinstance(points, list) or not points:
        raise InvalidCommand(f"{field}.power", f"{field}: power must be a non-empty list of [price, kW] points")
    try:
        parsed = parse_power_points(points)
        power_to_reduction(parsed)  # and the reductions from its baseline are finite too
    except (ValueError, OverflowError) as exc:
        raise offer_error(exc, field) from None
    return Offer(json.dumps({"power": points}), power=tuple(parsed))


def objective_offer(objective: Any, field: str = "offer") -> Offer:
    """An offer of an objective ({"reduceKW": …}, {"targetChargeKWh": …} or {"reservePercent": …})."""
    try:
        parsed = parse_objective(objective)
    except (ValueError, OverflowError) as exc:
        raise offer_error(exc, field) from None
    return Offer(json.dumps({"objective": objective}), objective=parsed)


def parse_offer(value: Any, field: str = "offer") -> Offer | None:
    """{"power": […]} | {"objective": {…}} | None (the default curve from the device's ratings)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("power", "objective"):
        raise InvalidCommand(field, f'{field}: an offer is {{"power": [[price, kW], …]}} or {{"objective": {{…}}}}')
    if "power" in value:
        return power_offer(value["power"], field)
    return objective_offer(value["objective"], field)
