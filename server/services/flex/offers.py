"""What an enrolled device offers: a power curve, a power curve per interval of each window, or an
objective (programs.curves), checked for shape when a command is made; whether the device can honour it (its ratings) is checked when the
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
    intervals: tuple[tuple[tuple[float, float], ...], ...] | None = None  # one power curve per interval

    def curves(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Every power curve it holds (none for an objective)."""
        return self.intervals or ((self.power,) if self.power is not None else ())

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


MAX_INTERVALS = 1000


def interval_offer(curves: Any, field: str = "offer") -> Offer:
    """An offer of one power curve per interval of each window ([[[price, kW], …], …]): interval k
    of a window clears curve k (the last one for any interval beyond). Every curve starts at the
    same power, the device's baseline (programs.curves.power_to_reduction), so one baseline maps
    each interval's setpoint to a control. A Beckn v2 bid curve becomes this (server.services.bpp
    .v2contracts)."""
    if not isinstance(curves, list) or not curves or len(curves) > MAX_INTERVALS:
        raise InvalidCommand(f"{field}.intervals", f"{field}: intervals must be a list of 1 to {MAX_INTERVALS} "
                             "power curves, one per interval")
    parsed = []
    for k, points in enumerate(curves):
        where = f"{field}.intervals[{k}]"
        if not isinstance(points, list) or not points:
            raise InvalidCommand(where, f"{where}: must be a non-empty list of [price, kW] points")
        try:
            pts = parse_power_points(points)
            power_to_reduction(pts)
        except (ValueError, OverflowError) as exc:
            err = offer_error(exc, where)
            raise InvalidCommand((err.field or where).replace(".power[", "["), err.message) from None
        if parsed and pts[0][1] != parsed[0][0][1]:
            raise InvalidCommand(where, f"{where}: starts at {pts[0][1]!r} kW, interval 0 at {parsed[0][0][1]!r} kW; "
                                 "every interval's curve starts at the device's baseline power")
        parsed.append(tuple(pts))
    return Offer(json.dumps({"intervals": curves}), intervals=tuple(parsed))


def objective_offer(objective: Any, field: str = "offer") -> Offer:
    """An offer of an objective ({"reduceKW": …}, {"targetChargeKWh": …} or {"reservePercent": …})."""
    try:
        parsed = parse_objective(objective)
    except (ValueError, OverflowError) as exc:
        raise offer_error(exc, field) from None
    return Offer(json.dumps({"objective": objective}), objective=parsed)


def parse_offer(value: Any, field: str = "offer") -> Offer | None:
    """{"power": […]} | {"intervals": [[…], …]} | {"objective": {…}} | None (the default curve from
    the device's ratings)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("power", "intervals", "objective"):
        raise InvalidCommand(field, f'{field}: an offer is {{"power": [[price, kW], …]}}, {{"intervals": '
                             f'[[[price, kW], …], …]}} or {{"objective": {{…}}}}')
    if "power" in value:
        return power_offer(value["power"], field)
    if "intervals" in value:
        return interval_offer(value["intervals"], field)
    return objective_offer(value["objective"], field)
