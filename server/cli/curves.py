"""`derflex der-program curve add|list|show|delete` (DER curves) and `derflex admin log-events`
(what a device reported). The same services as the admin API (server.services.sep2.dc and
server.services.sep2.lel), straight on the database."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import click

from server.cli.context import Context, echo_json, pass_ctx, run


def _short(mode: str) -> str:
    """opModVoltVar → volt-var, opModHVRTMustTrip → hvrt-must-trip, opModWattPF → watt-pf."""
    words = re.findall(r"[A-Z]{2,}(?=[A-Z][a-z]|$)|[A-Z][a-z]+|[A-Z]+", mode[len("opMod"):])
    return "-".join(w.lower() for w in words)


def _curve_types() -> dict[str, int]:
    from server.sep2.curves import CURVE_TYPES

    return {_short(mode): value for value, mode in CURVE_TYPES.items()}


_Y_REF_NAMES = {"na": 0, "setmaxw": 1, "setmaxvar": 2, "statvaravail": 3, "seteffectivev": 4,
                "setmaxchargeratew": 5, "setmaxdischargeratew": 6, "statwavail": 7}
_EPILOG = (
    "Types: freq-watt, volt-var, volt-watt, watt-pf, watt-var and the ride-through trip curves "
    "(hfrt-may-trip, hfrt-must-trip, hvrt-may-trip, hvrt-momentary-cessation, hvrt-must-trip, the "
    "lfrt-… and lvrt-… ones). Points are X:Y (watt-pf: X:Y:absorb or X:Y:inject); real values are "
    "X × 10^x-multiplier and Y × 10^y-multiplier. Y units (--y-ref): na, setMaxW, setMaxVar, "
    "statVarAvail, setEffectiveV, setMaxChargeRateW, setMaxDischargeRateW, statWAvail (or 0…7). "
    "Link a curve from a control with --control '{\"opModVoltVar\": CURVE_ID}'."
)


def _point(text: str) -> dict[str, Any]:
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        point: dict[str, Any] = {"xvalue": int(parts[0]), "yvalue": int(parts[1])}
    except ValueError:
        raise click.BadParameter(f"{text!r} is not X:Y (integers), e.g. 92:30", param_hint="--point") from None
    if len(parts) == 3:
        if parts[2] not in ("absorb", "inject"):
            raise click.BadParameter(f"{text!r}: the third part is absorb or inject", param_hint="--point")
        point["excitation"] = parts[2] == "absorb"
    return point


def _y_ref(text: str) -> int:
    key = text.strip().lstrip("%").lower().replace("/", "")
    if key.isdigit():
        return int(key)
    if key not in _Y_REF_NAMES:
        raise click.BadParameter(f"{text!r} is not a y unit (see --help)", param_hint="--y-ref")
    return _Y_REF_NAMES[key]


def _curve_text(view: dict[str, Any]) -> str:
    points = " ".join(f"{p['xvalue']}:{p['yvalue']}" + ("" if "excitation" not in p else
                      ":absorb" if p["excitation"] else ":inject") for p in view["CurveData"])
    scale = f"x×10^{view['xMultiplier']} y×10^{view['yMultiplier']} {view['yRefTypeName']}"
    name = f"  \"{view['description']}\"" if view.get("description") else ""
    return f"  {view['id']:>5}  {_short(view['curveTypeName']):<24} {scale:<28} {points}{name}"


@click.group("curve")
def curve() -> None:
    """DER curves of a DER program (volt-var, freq-watt, ride-through …) that controls link to."""


@curve.command("add", epilog=_EPILOG)
@click.argument("der_program_id", type=int)
@click.option("--type", "curve_type", metavar="TYPE", help="The curve type (see below), or its number 0…14.")
@click.option("--point", "points", multiple=True, metavar="X:Y", help="A point, 1…10 of them, x increasing.")
@click.option("--x-multiplier", type=int, default=0, show_default=True, help="Power of ten of x, -9…9.")
@click.option("--y-multiplier", type=int, default=0, show_default=True, help="Power of ten of y, -9…9.")
@click.option("--y-ref", "y_ref", metavar="UNIT", help="What y is a percentage of (see below).")
@click.option("--v-ref", type=int, metavar="1/100 %", help="Volt-var only: vRef, 10000 = 100 %.")
@click.option("--open-loop-tms", type=int, metavar="1/100 s", help="Time to 90 % of a new target.")
@click.option("--description", help="A name (at most 32 characters).")
@click.option("--curve", "curve_json", metavar="JSON", help="The whole curve as the admin API's JSON instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def curve_add(ctx: Context, der_program_id: int, curve_type: str | None, points: tuple[str, ...], x_multiplier: int,
              y_multiplier: int, y_ref: str | None, v_ref: int | None, open_loop_tms: int | None,
              description: str | None, curve_json: str | None, as_json: bool) -> None:
    """Add a curve to DER_PROGRAM_ID.

    \b
    Example: a volt-var curve in % of setMaxVar:
      derflex der-program curve add 1 --type volt-var --y-ref setMaxVar \\
        --point 92:30 --point 98:0 --point 102:0 --point 108:-30
    """
    from server.services.sep2 import dc

    if curve_json is not None:
        if curve_type or points or y_ref:
            raise click.UsageError("give either --curve JSON or --type/--point/--y-ref, not both")
        try:
            body = json.loads(curve_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--curve") from None
    else:
        if not curve_type or not points or y_ref is None:
            raise click.UsageError("say --type, --y-ref and at least one --point (or --curve JSON)")
        types = _curve_types()
        kind: Any = int(curve_type) if curve_type.isdigit() else types.get(curve_type.lower(), curve_type)
        body = {"curveType": kind, "yRefType": _y_ref(y_ref), "CurveData": [_point(p) for p in points],
                "xMultiplier": x_multiplier, "yMultiplier": y_multiplier}
        for key, value in (("vRef", v_ref), ("openLoopTms", open_loop_tms), ("description", description)):
            if value is not None:
                body[key] = value
    view = run(ctx, lambda s: dc.add_curve(s, der_program_id, body, int(time.time())))
    if as_json:
        echo_json(view)
        return
    click.echo(f"added curve {view['id']} to DER program {der_program_id}")
    click.echo(_curve_text(view))


@curve.command("list")
@click.argument("der_program_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def curve_list(ctx: Context, der_program_id: int, as_json: bool) -> None:
    """List DER_PROGRAM_ID's curves, newest first."""
    from server.services.sep2 import dc

    result = run(ctx, lambda s: dc.list_curves(s, der_program_id, 0, 1000))
    if as_json:
        echo_json(result)
        return
    click.echo(f"DER program {der_program_id}: {result['all']} curve(s)")
    for view in result["curves"]:
        click.echo(_curve_text(view))


@curve.command("delete")
@click.argument("der_program_id", type=int)
@click.argument("curve_id", type=int)
@pass_ctx
def curve_delete(ctx: Context, der_program_id: int, curve_id: int) -> None:
    """Delete a curve that no control of DER_PROGRAM_ID links to (its default, or an event not over)."""
    from server.services.sep2 import dc

    run(ctx, lambda s: dc.delete_curve(s, der_program_id, curve_id, int(time.time())))
    click.echo(f"DER program {der_program_id}: curve {curve_id} deleted")


@click.command("log-events")
@click.argument("device_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def log_events(ctx: Context, device_id: int, limit: int, as_json: bool) -> None:
    """Show the log events DEVICE_ID reported (LogEvents it posted), newest first.

    A device keeps its newest 1000; older ones are dropped as new ones arrive."""
    from server.services import clock
    from server.services.sep2 import lel

    result = run(ctx, lambda s: lel.device_log_events(s, device_id, 0, limit))
    if as_json:
        echo_json(result)
        return
    click.echo(f"device {device_id}: {result['all']} log event(s)")
    for e in result["log_events"]:
        extra = "" if e["extendedData"] is None else f" extendedData {e['extendedData']}"
        click.echo(f"  {clock.iso(e['createdDateTime'])}  functionSet {e['functionSet']:<3} code {e['logEventCode']:<3}"
                   f" id {e['logEventID']:<5} profile {e['profileID']} PEN {e['logEventPEN']}{extra}"
                   + (f"  \"{e['details']}\"" if e["details"] else ""))
