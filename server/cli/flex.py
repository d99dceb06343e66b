"""`derflex flex …` and `derflex scheduler`: flexibility programs for utility operators.

The same commands as the admin API (server.services.flex.commands, run by
server.services.flex.handlers), straight on the database, so no running server is needed; running
servers and the scheduler see changes at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from server.cli import context
from server.cli.context import Context, pass_ctx, run

_PROGRAM_HELP = """\b
A program is a JSON document, for example:
  {"name": "Peak Saver", "currency": "USD",
   "window": {"weekdays": ["mon","tue","wed","thu","fri"],
              "start": "16:00", "end": "21:00", "tz": "America/New_York"},
   "requested_kw": 500, "price_cap": 0.40,
   "incentive": {"kind": "pay_as_clear"},
   "eligible_kinds": ["battery", "ev_charger", "load"],
   "lead_time_s": 3600}
requested_kw: kW of load reduction wanted; price_cap (and price_floor): currency per kWh of
reduction; window: local wall-clock times in tz; lead_time_s: publish that long before it.
Optional: interval_s (with a list in requested_kw: one kW per interval), price_floor, primacy
(2030.5, lower wins), randomize_start_s, grid_node_ids, description (<= 32 bytes).
\b
Example:  derflex flex program create peak-saver.json"""


def _read_json(source: str, what: str = "SOURCE") -> Any:
    """A JSON value from a file path, '-' for standard input, or an inline JSON text; a bad source
    is one error line naming it (`what`: the argument or option it came from)."""
    inline = source.lstrip().startswith(("{", "["))
    name = "standard input" if source == "-" else f"{what} (inline JSON)" if inline else source
    try:
        if source == "-":
            text = sys.stdin.read()
        elif inline:
            text = source
        else:
            text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{name} is not a JSON text: it is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def _command(parse: Callable[..., Any], *args: Any) -> Any:
    """A command parsed from what the operator gave (server.services.flex.commands); a refusal is
    one error line, before the database is opened."""
    from server.services.errors import ServiceError

    try:
        return parse(*args)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None


def _execute(ctx: Context, command: Any) -> dict[str, Any]:
    """Run a command in one transaction; its result's JSON view."""
    from server.services.flex import handlers

    return run(ctx, lambda s: handlers.execute(s, command, context.now()).view())


def _money(x: float | None, currency: str = "") -> str:
    return "-" if x is None else f"{x:.4f} {currency}".strip()


def _echo_intervals(intervals: list[dict[str, Any]], currency: str = "") -> None:
    for iv in intervals:
        flag = "" if iv.get("feasible", True) else "  INFEASIBLE: best effort at the cap"
        if "price" not in iv:
            click.echo(f"    {iv['start']} → {iv['end']}  asked {iv['requested_kw']:.1f} kW: no device can take part")
            continue
        click.echo(
            f"    {iv['start']} → {iv['end']}  asked {iv['requested_kw']:.1f} kW, cleared {iv['quantity_kw']:.1f} kW"
            f" at {_money(iv['price'], currency)}/kWh (fleet offers {iv['available_at_cap_kw']:.1f} kW at the cap){flag}"
        )


@click.group("flex")
def flex_group() -> None:
    """Flexibility programs: author them, enroll devices, follow and dry-run their clearings."""


# ------------------------------------------------------------------------------------ programs


@flex_group.group("program")
def program_group() -> None:
    """Create, change, list and cancel flexibility programs."""


@program_group.command("create", epilog=_PROGRAM_HELP)
@click.argument("source")
@pass_ctx
def program_create(ctx: Context, source: str) -> None:
    """Create a program from SOURCE: a JSON file, '-' for standard input, or inline JSON."""
    from server.services.flex import commands

    view = _execute(ctx, _command(commands.parse_author_program, _read_json(source)))
    click.echo(f"program {view['id']} {view['name']!r} created (DER program {view['der_program_id']})")
    for w in view["next_windows"]:
        click.echo(f"  window {w['key']}: {w['start']} → {w['end']}, published at {w['publish_at']}")


@program_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def program_list(ctx: Context, as_json: bool) -> None:
    """Every program with its state, enrollments and next window."""
    from server.services.flex import programs as flex

    views = run(ctx, lambda s: flex.list_programs(s, context.now()))
    if as_json:
        context.echo_json(views)
        return
    if not views:
        click.echo("no programs yet: see `derflex flex program create --help`")
    for v in views:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(v["enrollments"].items())) or "no enrollments"
        nxt = v["next_windows"][0] if v["next_windows"] else None
        when = f"next window {nxt['key']} ({nxt['state']})" if nxt else "no window ahead"
        click.echo(f"{v['id']:>4}  {v['name']:<30} {v['state']:<9} {counts}; {when}")


@program_group.command("show")
@click.argument("program_id", type=int)
@pass_ctx
def program_show(ctx: Context, program_id: int) -> None:
    """A program's definition, enrollment counts and next windows (JSON)."""
    from server.services.flex import programs as flex

    context.echo_json(run(ctx, lambda s: flex.get_program(s, program_id, context.now())))


@program_group.command("update")
@click.argument("program_id", type=int)
@click.argument("changes")
@pass_ctx
def program_update(ctx: Context, program_id: int, changes: str) -> None:
    """Change fields of a program: CHANGES is JSON (file, '-' or inline), e.g. '{"requested_kw": 400}'.

    Windows already published and not yet started are cleared again with the new definition."""
    from server.services.flex import commands

    view = _execute(ctx, _command(commands.parse_update_program, program_id, _read_json(changes, "CHANGES")))
    click.echo(f"program {view['id']} {view['name']!r} is at version {view['version']}")


@program_group.command("cancel")
@click.argument("program_id", type=int)
@click.confirmation_option(prompt="Cancel the program and every event of its windows that have not ended?")
@pass_ctx
def program_cancel(ctx: Context, program_id: int) -> None:
    """End a program: its planned and published windows are cancelled with their events."""
    from server.services.flex import commands

    view = _execute(ctx, commands.CancelProgram(program_id))
    click.echo(f"program {view['id']} {view['name']!r} is {view['state']}")


# ---------------------------------------------------------------------------------- grid nodes


@flex_group.group("node")
def node_group() -> None:
    """Grid nodes (substations, feeders, transformers): price adders and flow limits."""


@node_group.command("put")
@click.argument("name")
@click.option("--parent", help="The node this one hangs from (adders add up along the path).")
@click.option("--root", is_flag=True, help="Make it a top-level node (no parent).")
@click.option("--load-percent", type=float, help="Current loading, % (adder = multiplier × load % × adder per %).")
@click.option("--adder-per-percent", type=float, help="Price adder per % of loading, currency/kWh.")
@click.option("--congestion-multiplier", type=float, help="Scales the adder (default 1).")
@click.option("--max-forward-kw", type=float, help="Most forward flow allowed (reductions must bring it under).")
@click.option("--max-reverse-kw", type=float, help="Most reverse flow allowed (caps reductions behind it).")
@click.option("--current-load-kw", type=float, help="Forward flow now, kW (the limits are checked against it).")
@pass_ctx
def node_put(ctx: Context, name: str, parent: str | None, root: bool, **values: Any) -> None:
    """Create the grid node NAME, or change the given fields of it."""
    from server.services.flex import commands

    body: dict[str, Any] = {"name": name, **{k: v for k, v in values.items() if v is not None}}
    if parent is not None and root:
        raise click.UsageError("--parent and --root contradict each other")
    if parent is not None:
        body["parent"] = parent
    elif root:
        body["parent"] = None
    view = _execute(ctx, _command(commands.parse_put_grid_node, body))
    click.echo(f"node {view['name']}: parent {view['parent'] or '-'}, adder {view['adder']:.4f}, "
               f"path adder {view['path_adder']:.4f}/kWh, limits fwd {view['max_forward_kw']} rev {view['max_reverse_kw']} kW")


@node_group.command("list")
@pass_ctx
def node_list(ctx: Context) -> None:
    """Every grid node, with its parent, price adder, loading and flow limits."""
    from server.services.flex import grid_nodes

    nodes = run(ctx, grid_nodes.list_grid_nodes)
    if not nodes:
        click.echo("no grid nodes")
    for v in nodes:
        click.echo(f"{v['name']:<20} parent {v['parent'] or '-':<20} path adder {v['path_adder']:.4f}  "
                   f"load {v['current_load_kw']} kW  fwd≤{v['max_forward_kw']} rev≤{v['max_reverse_kw']}")


@node_group.command("delete")
@click.argument("name")
@pass_ctx
def node_delete(ctx: Context, name: str) -> None:
    """Delete a grid node that nothing uses."""
    from server.services.flex import commands

    _execute(ctx, _command(commands.parse_delete_grid_node, name))
    click.echo(f"node {name} deleted")


# --------------------------------------------------------------------------------- enrollments


@flex_group.command("enroll")
@click.argument("program_id", type=int)
@click.option("--device", "device_id", type=int, help="EndDevice id (see `derflex admin devices`).")
@click.option("--lfdi", help="Or the device's LFDI.")
@click.option("--customer", required=True, help="Who enrolls it (name or account id).")
@click.option("--kind", type=click.Choice(["battery", "pv", "ev_charger", "load"]),
              help="Device kind; default: from the DERType it reported.")
@click.option("--grid-node", help="The grid node it is behind.")
@click.option("--offer", help='Its offer as JSON: {"power": [[price, kW], …]} (kW < 0 = consumption) or '
                              '{"objective": {…}}. Default: a curve from its ratings.')
@click.option("--pending", is_flag=True, help="Enroll as pending (confirm later) instead of active.")
@pass_ctx
def enroll(ctx: Context, program_id: int, device_id: int | None, lfdi: str | None, customer: str,
           kind: str | None, grid_node: str | None, offer: str | None, pending: bool) -> None:
    """Enroll a device (give --device or --lfdi) in a program.

    Without --offer the device offers a default curve from the ratings it reported (DERCapability,
    DERSettings, DERAvailability): nothing at the price floor rising to its maximum at the cap."""
    from server.services.flex import commands

    body: dict[str, Any] = {"customer": customer}
    if device_id is not None:
        body["device_id"] = device_id
    if lfdi is not None:
        body["lfdi"] = lfdi
    for key, value in (("kind", kind), ("grid_node", grid_node)):
        if value is not None:
            body[key] = value
    if offer is not None:
        body["offer"] = _read_json(offer, "--offer")
    if pending:
        body["state"] = "pending"
    view = _execute(ctx, _command(commands.parse_enroll, program_id, body))
    click.echo(f"enrollment {view['id']}: device {view['device_id']} ({view['kind']}) is {view['state']}")


@flex_group.command("enrollments")
@click.argument("program_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def enrollments(ctx: Context, program_id: int, limit: int, as_json: bool) -> None:
    """A program's enrollments: device, kind, state, customer, offer and grid node."""
    from server.services.flex import enrollments

    result = run(ctx, lambda s: enrollments.list_enrollments(s, program_id, 0, limit))
    if as_json:
        context.echo_json(result)
        return
    click.echo(f"{result['all']} enrollment(s)")
    for e in result["enrollments"]:
        offer = "default curve" if e["offer"] is None else next(iter(e["offer"]))
        click.echo(f"{e['id']:>6}  device {e['device_id']:<6} {e['kind']:<10} {e['state']:<9} "
                   f"{e['customer'][:24]:<24} {offer}  node {e['grid_node'] or '-'}")


@flex_group.command("enrollment")
@click.argument("program_id", type=int)
@click.argument("enrollment_id", type=int)
@click.argument("action", type=click.Choice(["confirm", "pause", "resume", "cancel", "end"]))
@pass_ctx
def enrollment_action(ctx: Context, program_id: int, enrollment_id: int, action: str) -> None:
    """Move an enrollment through its lifecycle (cancel/end also cancel the device's events)."""
    from server.services.flex import commands

    view = _execute(ctx, _command(commands.parse_enrollment_event, program_id, enrollment_id, action))
    click.echo(f"enrollment {view['id']} is {view['state']}")


# ------------------------------------------------------------------------------------- windows


@flex_group.command("windows")
@click.argument("program_id", type=int)
@click.option("--past", is_flag=True, help="Include windows that have ended.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def windows(ctx: Context, program_id: int, past: bool, as_json: bool) -> None:
    """A program's windows, their state and clearing results."""
    from server.services.flex import programs as flex, windows

    def work(s: Any) -> tuple[list[dict[str, Any]], str]:
        views = windows.list_windows(s, program_id, context.now(), include_past=past)
        return views, flex.get_program(s, program_id, context.now())["program"]["currency"]

    views, currency = run(ctx, work)
    if as_json:
        context.echo_json(views)
        return
    if not views:
        click.echo("no windows (see `derflex flex program show`)")
    for w in views:
        rev = f" rev {w['revision']}" if w["revision"] else ""
        click.echo(f"{w['key']}  {w['start']} → {w['end']}  {w['state']}{rev}"
                   + (f"  ({w['note']})" if w["note"] else ""))
        _echo_intervals(w["intervals"], currency)


@flex_group.command("window")
@click.argument("program_id", type=int)
@click.argument("key")
@click.option("--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="Largest setpoints shown.")
@pass_ctx
def window(ctx: Context, program_id: int, key: str, top: int) -> None:
    """One window: its clearing per interval and its largest setpoints (JSON).

    KEY is the window's local date, as `derflex flex windows PROGRAM_ID` lists it (e.g. 2026-11-23)."""
    from server.services.flex import windows

    context.echo_json(run(ctx, lambda s: windows.window_view(s, program_id, key, top=top)))


@flex_group.command("cancel-window")
@click.argument("program_id", type=int)
@click.argument("key")
@pass_ctx
def cancel_window(ctx: Context, program_id: int, key: str) -> None:
    """Cancel one window of a program; the events it published are cancelled (never deleted).

    KEY is the window's local date, as `derflex flex windows PROGRAM_ID` lists it (e.g. 2026-11-23)."""
    from server.services.flex import commands

    view = _execute(ctx, _command(commands.parse_cancel_window, program_id, key))
    click.echo(f"window {view['key']} is {view['state']}")


def _price(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".") if x else "0"


@flex_group.command("dry-run")
@click.argument("program_id", type=int)
@click.option("--window", "key", help="Window key (its local date, e.g. 2026-11-23). Default: the next one.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the supply-curve picture. Default: dry-run-<program>-<window>.png.")
@click.option("--no-png", is_flag=True, help="Do not draw the picture.")
@click.option("--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="Largest setpoints shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def dry_run(ctx: Context, program_id: int, key: str | None, png_path: Path | None, no_png: bool, top: int,
            as_json: bool) -> None:
    """Clear a window now, as the scheduler would, and publish nothing.

    Prints the fleet's aggregate supply curve (kW of reduction offered at each price), then per
    interval the clearing price, the quantity cleared, whether the request is feasible under the
    price cap, and the largest device setpoints; writes a PNG of the supply curve with the
    requested kW, the price cap and the clearing point (for a profile: the interval asking most).

    \b
    Example:  derflex flex dry-run 1 --window 2026-11-23 --png peak.png"""
    from programs.publishing import is_open
    from server.services.flex import plots, dry_run as dry_runs, programs as flex

    def work(s: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str, Any]:
        result = dry_runs.dry_run(s, program_id, key, context.now())
        zone = result.program.window.zone
        view = result.view(top=top)
        view["program_state"] = flex.get_program(s, program_id, context.now())["state"]
        view["local"] = f"{context.local_time(result.window.start, zone)}–{context.local_time(result.window.end, zone)} {zone.key}"
        prices, quantities = result.curve_points(11)  # the cap in tenths, plus the curves' breakpoints
        view["aggregate_curve"] = [[round(float(p), 6), round(float(q), 3)] for p, q in zip(prices, quantities)]
        picture = None  # drawn after the transaction: no database lock held while matplotlib works
        if not no_png and len(result.fleet):
            args = result.plot_args()
            title = f"{result.program.name} — dry run of {view['window']}, {view['local']}, {view['devices']} devices"
            if len(result.results) > 1:  # plot_args draws the interval asking the most
                req = max((r for r, _ in result.results), key=lambda r: r.requested_kw)
                title += f"\ninterval {context.local_time(req.start.timestamp(), zone)}–{context.local_time(req.end.timestamp(), zone)}"
            picture = {**args, "title": title}
        return view, picture, result.program.currency, zone

    view, picture, currency, zone = run(ctx, work)
    if picture is not None:
        path = png_path or Path(f"dry-run-{program_id}-{view['window']}.png")
        try:
            path.write_bytes(plots.supply_curve_png(**picture))
        except OSError as exc:
            raise click.ClickException(f"cannot write the picture to {path}: {exc.strerror or exc}") from None
        view["png"] = str(path)
    if as_json:
        context.echo_json(view)
        return
    unit = f"{currency}/kWh"
    left_out = f", {view['skipped_count']} left out" if view["skipped_count"] else ""
    click.echo(f"dry run of {view['program']!r}, window {view['window']} ({view['local']}): "
               f"{view['devices']} devices{left_out}; nothing is published")
    if view["program_state"] != "active" or not is_open(view["state"]):
        click.echo(f"  note: the program is {view['program_state']} and this window is {view['state']}: "
                   "the scheduler will not publish it")
    for item in view["skipped"][:5]:
        click.echo(f"  left out: device {item['device_id']}: {item['reason']}")
    if view["aggregate_curve"]:
        click.echo(f"  aggregate supply curve, price ({unit}) → kW of reduction offered:")
        click.echo("    " + "   ".join(f"{_price(p)} → {q:.1f}" for p, q in view["aggregate_curve"]))
    for iv in view["intervals"]:
        when = context.local_span(iv["start"], iv["end"], zone)
        if "price" not in iv:
            click.echo(f"  {when}  asked {iv['requested_kw']:.1f} kW: no device can take part")
            continue
        verdict = (f"feasible (the fleet offers {iv['available_at_cap_kw']:.1f} kW at the cap)" if iv["feasible"]
                   else f"INFEASIBLE: best effort at the cap, {iv['requested_kw'] - iv['quantity_kw']:.1f} kW short")
        click.echo(f"  {when}  asked {iv['requested_kw']:.1f} kW: clearing price {iv['price']:.4f} {unit}, "
                   f"quantity {iv['quantity_kw']:.1f} kW, {verdict}")
    shown = [iv for iv in view["intervals"] if iv.get("top_setpoints")]
    if shown and top:
        iv = max(shown, key=lambda i: i["requested_kw"])
        which = "" if len(view["intervals"]) == 1 else f" ({context.local_span(iv['start'], iv['end'], zone)}, the largest request)"
        click.echo(f"  largest setpoints{which}, kW of reduction and the price each device sees:")
        for sp in iv["top_setpoints"][:top]:
            click.echo(f"    device {sp['device_id']:<8} {sp['reduction_kw']:9.3f} kW at {sp['price']:.4f} {unit}")
    if "png" in view:
        click.echo(f"  picture: {view['png']}")
    elif not no_png:
        click.echo("  no picture: no device of this program can take part in this window")


def _add_settlement_commands() -> None:
    from server.cli.flex_settlement import enrollment_settlement, settle, settlement_report

    for command in (settle, settlement_report, enrollment_settlement):
        flex_group.add_command(command)


_add_settlement_commands()
