"""`derflex flex settle | settlement | enrollment-settlement`: measure and settle a window now, and
read its stored report (table, JSON, CSV, PNG, a device's trace to its readings)."""

from __future__ import annotations
from pathlib import Path
from typing import Any
import click
from server.cli import context
from server.cli.context import Context, pass_ctx, prepare_quiet, run


_FORMATS = click.Choice(["table", "json", "csv"])
_SETTLE_HELP = """\b
KEY is the window's local date, as `derflex flex windows PROGRAM_ID --past` lists it.
Amounts are shown in major units (USD 2.56); JSON and CSV keep integer minor units (256).
Every settlement is a stored *version*: re-running with the same readings changes nothing, and
late or corrected readings make a new version (the old one stays, marked superseded)."""


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}".replace("%", " %")


def _cash(minor: int, currency: str) -> str:
    from server.services.flex.reports import major

    return f"{currency} {major(minor, currency)}"


def _minutes(interval_s: int) -> str:
    return f"{interval_s // 60}-minute" if interval_s % 60 == 0 else f"{interval_s}-second"


def _echo_flows(flows: list[dict[str, Any]], currency: str, indent: str = "  ") -> None:
    width = max((len(f["party"]) for f in flows), default=0)
    for f in flows:
        click.echo(f"{indent}{f['party']:<{width}}  {f['role']:<13} {_cash(f['amount_minor'], currency):>14}"
                   + (f"  {f['description']}" if f.get("description") else ""))


def _echo_window_report(report: dict[str, Any], zone: Any) -> None:
    s, cur = report["summary"], report["currency"]
    state = "current" if report["current"] else "superseded"
    click.echo(f"{report['program']} — window {report['window']}, {report['local']}")
    click.echo(f"settlement version {report['version']} ({state}, {report['reason']}), settled {s['settled_at']}; "
               f"{s['devices']} device(s); {_minutes(s['interval_s'])} intervals")
    methods = ", ".join(f"{m} × {n}" for m, n in sorted(s["methods"].items())) or "-"
    click.echo(f"baselines: {methods}; event days left out of baselines: {', '.join(s['excluded_days']) or 'none'}")
    click.echo("")
    click.echo(f"  {'interval':<13} {'requested':>10} {'cleared':>9} {'delivered':>10} {'credited':>9} "
               f"{'measured':>9}  price ({cur}/kWh)")
    for iv in s["intervals"]:
        measured = f"{iv['measured_devices']}/{s['devices']}"
        click.echo(f"  {context.local_span(iv['start'], iv['end'], zone):<13} {_fmt(iv['requested_kw']):>10} "
                   f"{_fmt(iv['cleared_kw']):>9} {_fmt(iv['delivered_kw']):>10} {_fmt(iv['credited_kw']):>9} "
                   f"{measured:>9}  {_fmt(iv['price'], 4)}")
    click.echo(f"  {'total (kWh)':<13} {_fmt(s['requested_kwh']):>10} {_fmt(s['cleared_kwh']):>9} "
               f"{_fmt(s['delivered_kwh']):>10} {_fmt(s['credited_kwh']):>9}")
    click.echo("  (kW of load reduction; delivered = measured against each device's baseline, credited = the part "
               "paid: up to each device's commitment)")
    share = s["delivered_kwh"] / s["requested_kwh"] if s["requested_kwh"] else None
    click.echo("")
    click.echo(f"Delivered {s['delivered_kwh']:.1f} of {s['requested_kwh']:.1f} kWh asked ({_pct(share)}); "
               f"paid {_cash(s['total_minor'], cur)} (gross {_cash(s['gross_minor'], cur)}, "
               f"of which tax {_cash(s['tax_minor'], cur)})")
    if "changes" in s:
        c = s["changes"]
        click.echo(f"changed from version {c['previous_version']}: delivered {c['delivered_kwh'][0]} → "
                   f"{c['delivered_kwh'][1]} kWh, paid {_cash(c['total_minor'][0], cur)} → {_cash(c['total_minor'][1], cur)}")
    if s["flows"]:
        click.echo("money flows:")
        _echo_flows(s["flows"], cur)
    page = report["devices"]
    if page["rows"]:
        last = page["start"] + len(page["rows"])
        click.echo(f"devices ({page['all']}; showing {page['start'] + 1}–{last}):")
        click.echo(f"  {'device':>7}  {'customer':<20} {'method':<16} {'credited kWh':>12} {'perf.':>6} "
                   f"{'gross':>12} {'paid':>12}  flags")
        for d in page["rows"]:
            click.echo(f"  {d['device_id']:>7}  {d['customer'][:20]:<20} {d['method']:<16} {_fmt(d['energy_kwh']):>12} "
                       f"{_pct(d['performance']):>6} {_cash(d['gross_minor'], cur):>12} "
                       f"{_cash(d['total_minor'], cur):>12}  {', '.join(d['flags']) or '-'}")
        if last < page["all"]:
            click.echo(f"  … {page['all'] - last} more: use --start {last}")
    click.echo("versions: " + "; ".join(
        f"v{v['version']} {v['reason']} {v['created']}" + (f" (superseded {v['superseded']})" if v["superseded"] else
                                                          " (current)") for v in report["versions"]))


def _echo_trace(t: dict[str, Any], zone: Any) -> None:
    d, detail, cur = t["device"], t["detail"], t["currency"]
    click.echo(f"device {d['device_id']} (LFDI {d['lfdi']}), customer {d['customer']}, enrollment "
               f"{d['enrollment_id'] if d['enrollment_id'] is not None else '-'} — {t['program']}, window {t['window']} "
               f"({t['local']}), settlement version {t['version']}{'' if t['current'] else ' (superseded)'}")
    days = ", ".join(detail["days_used"]) or "none"
    click.echo(f"baseline: {detail['method']} from {days} ({detail['eligible_days']} eligible day(s)); "
               f"adjustment α {detail['alpha']} δ {detail['delta_kw']} kW; flags: {', '.join(detail['flags']) or 'none'}")
    if detail.get("fallback_reason"):
        click.echo(f"  why: {detail['fallback_reason']}")
    click.echo("")
    click.echo(f"  {'interval':<13} {'baseline':>9} {'adjusted':>9} {'actual':>8} {'readings':>9} {'reduction':>10} "
               f"{'setpoint':>9} {'price':>7} {'credited kWh':>13} {'amount':>11}")
    end = t["interval_s"]
    from datetime import datetime, timedelta

    from server.services.flex.reports import credited_kwh

    for iv in detail["intervals"]:
        stop = (datetime.fromisoformat(iv["start"].replace("Z", "+00:00")) + timedelta(seconds=end)).isoformat()
        credited = float(credited_kwh(iv["lines"]))
        amount = sum(ln["amount_minor"] for ln in iv["lines"])
        click.echo(f"  {context.local_span(iv['start'], stop, zone):<13} {_fmt(iv['baseline_kw']):>9} {_fmt(iv['adjusted_kw']):>9} "
                   f"{_fmt(iv['actual_kw']):>8} {_fmt(iv['readings_kw']):>9} {_fmt(iv['reduction_kw']):>10} "
                   f"{_fmt(iv['setpoint_kw']):>9} {_fmt(iv['price'], 4):>7} {credited:>13.3f} {_cash(amount, cur):>11}")
    click.echo("  (kW; readings = the meter readings below averaged over the interval, as settlement read them)")
    if detail.get("waived_minor"):
        click.echo(f"  waived: {_cash(detail['waived_minor'], cur)} (charges above what the device earned)")
    click.echo(f"credited {_fmt(d['energy_kwh'])} kWh, performance {_pct(d['performance'])}, gross "
               f"{_cash(d['gross_minor'], cur)}, paid {_cash(d['total_minor'], cur)}")
    if d["flows"]:
        click.echo("money flows:")
        _echo_flows(d["flows"], cur)
    r = detail["readings"]
    click.echo(f"meter readings (usage point {r['usage_point_id']}, meter reading(s) "
               f"{', '.join(map(str, r['meter_reading_ids'])) or '-'}):")
    for sp in t["spans"]:
        click.echo(f"  {sp['what']} {sp['date']} {context.local_span(sp['start'], sp['end'], zone)}: {len(sp['readings'])} reading(s)"
                   + (f", {min(x['watts'] for x in sp['readings']):g}–{max(x['watts'] for x in sp['readings']):g} W"
                      if sp["readings"] else ""))
    click.echo("readings now: " + ("CHANGED since this settlement (late or re-posted readings: a re-settlement "
                                   "would give other figures)" if t["readings_changed"]
                                   else "the same as settled (digest matches)"))


def _zone(s: Any, program_id: int) -> Any:
    from server.services.flex import reports as settlement_reports

    return settlement_reports.program_zone(s, program_id)


@click.command("settle", epilog=_SETTLE_HELP)
@click.argument("program_id", type=int)
@click.argument("key")
@pass_ctx
def settle(ctx: Context, program_id: int, key: str) -> None:
    """Measure and settle one ended window now, as the scheduler does after the program's delay.

    Reads the meter readings, computes each device's baseline and reduction, pays what was
    delivered up to each commitment at the cleared price, splits the money, and stores it as a new
    version — or, when nothing it reads has changed since the last settlement, stores nothing and
    says so. Then prints the settlement as `derflex flex settlement` does."""
    from server.services.flex import settlement, reports as settlement_reports
    from server.services.errors import ServiceError, check_text

    database = prepare_quiet(ctx.settings())
    try:
        key = check_text(key, "window key", 32) or ""
        outcome = settlement.settle_window(database, program_id, key, context.now(), reason="operator")
        with database.transaction() as s:
            report = settlement_reports.window_report(s, program_id, key)
            zone = _zone(s, program_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        database.dispose()
    if outcome is None:
        click.echo(f"window {key}: nothing changed since version {report['version']} (same readings, setpoints, "
                   "prices and terms): it stands")
    else:
        click.echo(f"window {key} settled: version {outcome['version']} ({outcome['reason']})")
    click.echo("")
    _echo_window_report(report, zone)


def _write_png(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write the picture to {path}: {exc.strerror or exc}") from None


@click.command("settlement", epilog=_SETTLE_HELP)
@click.argument("program_id", type=int)
@click.argument("key")
@click.option("--version", "version", type=click.IntRange(1, 2**31 - 1),
              help="A stored settlement version (default: the current one).")
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True,
              help="table: for people; json: everything stored; csv: one row per device and interval.")
@click.option("--device", "device_id", type=click.IntRange(1, 2**31 - 1),
              help="One device, down to the meter readings behind its figures.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a picture of requested vs cleared vs delivered kW per interval.")
@click.option("--start", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="First device row shown (table and json).")
@click.option("--limit", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Device rows shown (table and json).")
@pass_ctx
def settlement_report(ctx: Context, program_id: int, key: str, version: int | None, fmt: str,
                      device_id: int | None, png_path: Path | None, start: int, limit: int) -> None:
    """A window's settlement: requested, cleared and delivered kW per interval, money and who gets it.

    The table shows each interval (local time) with the kW requested, cleared (committed by the
    fleet), delivered (measured against baselines) and credited (paid), the money flows per party
    in major units, the devices and every version. With --device: that device's baseline,
    readings and money per interval and the meter readings behind them, with a check that they
    have not changed since.

    \b
    Example:  derflex flex settlement 1 2026-11-30 --png settlement.png"""
    from server.services.flex import plots, reports as settlement_reports

    def work(s: Any) -> tuple[Any, Any, dict[str, Any] | None]:
        zone = _zone(s, program_id)
        if fmt == "csv":
            body: Any = settlement_reports.window_csv(s, program_id, key, version=version, device_id=device_id)
        elif device_id is not None:
            body = settlement_reports.device_trace(s, program_id, key, device_id, version=version)
        else:
            body = settlement_reports.window_report(s, program_id, key, version=version, start=start, limit=limit)
        picture = None if png_path is None else settlement_reports.window_plot_args(s, program_id, key, version)
        return body, zone, picture

    body, zone, picture = run(ctx, work)
    if picture is not None and png_path is not None:  # drawn after the transaction
        _write_png(png_path, plots.delivery_png(**picture))
    if fmt == "csv":
        click.echo(body, nl=False)
    elif fmt == "json":
        context.echo_json(body)
    elif device_id is not None:
        _echo_trace(body, zone)
    else:
        _echo_window_report(body, zone)
    if png_path is not None:
        click.echo(f"picture: {png_path}", err=fmt != "table")


@click.command("enrollment-settlement")
@click.argument("program_id", type=int)
@click.argument("enrollment_id", type=int)
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True,
              help="table: for people; json: every window with its flows; csv: one row per window and interval.")
@pass_ctx
def enrollment_settlement(ctx: Context, program_id: int, enrollment_id: int, fmt: str) -> None:
    """What one enrollment's device delivered and earned in every settled window of a program.

    Per window (its current settlement version): credited kWh, performance (credited ÷ committed),
    gross and paid amounts; then the totals and who gets them (the customer, the grid operator,
    the aggregator, tax), in major units."""
    from server.services.flex import reports as settlement_reports

    def work(s: Any) -> tuple[Any, Any]:
        if fmt == "csv":
            return settlement_reports.enrollment_csv(s, program_id, enrollment_id), None
        return settlement_reports.enrollment_report(s, program_id, enrollment_id), None

    body, _ = run(ctx, work)
    if fmt == "csv":
        click.echo(body, nl=False)
        return
    if fmt == "json":
        context.echo_json(body)
        return
    click.echo(f"enrollment {body['enrollment_id']} ({body['state']}): device {body['device_id']} (LFDI {body['lfdi']}), "
               f"customer {body['customer']} — program {body['program']!r}")
    if not body["windows"]:
        click.echo("no settled window includes this device yet (windows are settled after they end)")
        return
    click.echo(f"  {'window':<12} {'local time':<34} {'version':>7} {'credited kWh':>12} {'perf.':>6} "
               f"{'gross':>12} {'paid':>12}  flags")
    for w in body["windows"]:
        click.echo(f"  {w['window']:<12} {w['local']:<34} {'v' + str(w['version']):>7} {_fmt(w['energy_kwh']):>12} "
                   f"{_pct(w['performance']):>6} {_cash(w['gross_minor'], w['currency']):>12} "
                   f"{_cash(w['total_minor'], w['currency']):>12}  {', '.join(w['flags']) or '-'}")
    for t in body["totals"]:
        cur = t["currency"]
        click.echo(f"total over {t['windows']} window(s): {_fmt(t['energy_kwh'])} kWh credited, gross "
                   f"{_cash(t['gross_minor'], cur)}, paid {_cash(t['total_minor'], cur)}")
        _echo_flows(t["flows"], cur)
