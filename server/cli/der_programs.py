"""`derflex der-program …` and `derflex event …`: DER programs, their members, default controls and
events, for utility operators. The same services as the admin API (server.services.sep2.der_programs),
straight on the database: running servers follow within a quarter of a second.

`derflex program …` is the old name of `der-program`, kept as a hidden alias that says so on stderr:
"program" alone now means a flexibility program (`derflex flex`)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import click

from server.cli.context import Context, pass_ctx, run

_EPILOG_CONTROL = (
    "Control modes (IEEE 2030.5 DERControlBase): --fixed-w and --max-w are in HUNDREDTHS OF A "
    "PERCENT of the device's rated maximum power (setMaxW): 10000 = 100 %, 5000 = 50 %, 100 = 1 %."
)


# ---------------------------------------------------------------------------------- formatting


def _when(seconds: int | None) -> str:
    """'2026-11-23T00:00:00Z (1795392000)': ISO-8601 UTC and epoch seconds."""
    from server.services import clock

    return "-" if seconds is None else f"{clock.iso(seconds)} ({seconds})"


def _control_text(control: dict[str, Any] | None) -> str:
    if not control:
        return "-"
    parts = []
    for key, value in control.items():
        if key in ("opModTargetW", "opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW") and isinstance(value, dict):
            parts.append(f"{key}={value.get('value', 0) * 10 ** value.get('multiplier', 0)} W")
        elif key in ("opModFixedW", "opModMaxLimW") and isinstance(value, int):
            parts.append(f"{key}={value} ({value / 100:g} %)")
        elif isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        else:
            parts.append(f"{key}={json.dumps(value) if isinstance(value, dict) else value}")
    return ", ".join(parts)


def _duration_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"


def _responses_text(summary: dict[str, int]) -> str:
    counts = [f"{k.replace('_', ' ')} {v}" for k, v in summary.items()
              if k not in ("devices_targeted", "responded", "rejected") and v]
    if summary.get("rejected") and not any(c.startswith("rejected") for c in counts):
        counts.append(f"rejected {summary['rejected']}")
    head = f"{summary['devices_targeted']} targeted, {summary['responded']} answered"
    return head + (": " + ", ".join(counts) if counts else "")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _echo_der_program(view: dict[str, Any]) -> None:
    click.echo(f"DER program {view['id']}  {view['description'] or '(no description)'}")
    click.echo(f"  mRID             {view['mrid']}")
    click.echo(f"  primacy          {view['primacy']}  (lower wins over the device's other DER programs)")
    click.echo(f"  created          {_when(view['created_time'])}")
    default = _control_text(view["default_control"])
    if view["default_control"]:
        default += f"  (version {view['default_control_version']})"
    click.echo(f"  default control  {default}")
    members = view.get("members")
    shown = "" if members is None else ": " + (" ".join(str(m) for m in members[:50]) or "none")
    more = " …" if members is not None and len(members) > 50 else ""
    click.echo(f"  members          {view['member_count']}{shown}{more}")


def _echo_events(events: list[dict[str, Any]]) -> None:
    if not events:
        click.echo("  (none)")
        return
    for e in events:
        target = "all members" if e["device_id"] is None else f"device {e['device_id']}"
        click.echo(f"  {e['mrid']}  {e['state']:<9}  DER program {e['program_id']}, {target}"
                   + (f"  \"{e['description']}\"" if e["description"] else ""))
        click.echo(f"      start    {_when(e['start'])}   duration {_duration_text(e['duration'])}"
                   f" ({e['duration']} s)   end {_when(e['end'])}")
        click.echo(f"      control  {_control_text(e['control'])}")
        if e["cancelled_at"] is not None:
            how = "with randomization" if e["cancel_randomized"] else "at once"
            click.echo(f"      cancelled {_when(e['cancelled_at'])} ({how})")
        click.echo(f"      devices  {_responses_text(e['responses'])}")


# ------------------------------------------------------------------------------ control options


class _Duration(click.ParamType):
    name = "SECONDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a duration: seconds, or e.g. 90m, 2h", param, ctx)
        return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def _watts(watts: int, hint: str = "--target-w") -> dict[str, int]:
    """W as an ActivePower's value × 10^multiplier, exactly (value is an Int16)."""
    value, multiplier = watts, 0
    while not -32768 <= value <= 32767:
        if value % 10:
            raise click.BadParameter(
                f"{watts} W cannot be sent exactly (2030.5 carries a 16-bit value × a power of ten); "
                f"round it, e.g. to {round(watts, -len(str(abs(watts))) + 4)}",
                param_hint=hint,
            )
        value, multiplier = value // 10, multiplier + 1
    return {"value": value, "multiplier": multiplier}


def control_options(fn: Any) -> Any:
    """The DERControlBase modes as options (shared by events and default controls)."""
    options = [
        click.option("--fixed-w", "fixed_w", type=int, metavar="1/100 %",
                     help="opModFixedW: hold active power at this share of the device's maximum, in "
                     "hundredths of a percent (5000 = discharge/generate at 50 %; negative = charge, "
                     "-2500 = charge at 25 % of the maximum charge rate). -10000…10000."),
        click.option("--max-w", "max_w", type=int, metavar="1/100 %",
                     help="opModMaxLimW: cap active power output at this share of the device's maximum, "
                     "in hundredths of a percent (6000 = at most 60 %). 0…10000."),
        click.option("--target-w", "target_w", type=int, metavar="WATTS",
                     help="opModTargetW: hold active power at this many watts (negative = absorb)."),
        click.option("--connect/--disconnect", "connect", default=None,
                     help="opModConnect: connect to, or disconnect from, the grid."),
        click.option("--energize/--de-energize", "energize", default=None,
                     help="opModEnergize: energize, or cease to energize, the grid."),
        click.option("--export-limit", "exp_lim_w", type=int, metavar="WATTS",
                     help="opModExpLimW (CSIP-AUS): the site exports at most this many watts."),
        click.option("--import-limit", "imp_lim_w", type=int, metavar="WATTS",
                     help="opModImpLimW (CSIP-AUS): the site imports at most this many watts."),
        click.option("--generation-limit", "gen_lim_w", type=int, metavar="WATTS",
                     help="opModGenLimW (CSIP-AUS): the device generates (discharges) at most this many watts."),
        click.option("--load-limit", "load_lim_w", type=int, metavar="WATTS",
                     help="opModLoadLimW (CSIP-AUS): the device consumes (charges) at most this many watts."),
        click.option("--ramp-tms", "ramp_tms", type=click.IntRange(0, 65535), metavar="1/100 s",
                     help="rampTms: ramp to the new setting over this time, in hundredths of a second "
                     "(6000 = one minute)."),
        click.option("--control", "control_json", metavar="JSON",
                     help='The whole control as JSON instead, e.g. \'{"opModFixedW": 5000, "rampTms": 3000}\'.'),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _control(options: dict[str, Any], *, required: bool = True) -> dict[str, Any] | None:
    spec: dict[str, Any] = {}
    for key, name in (("fixed_w", "opModFixedW"), ("max_w", "opModMaxLimW"), ("connect", "opModConnect"),
                      ("energize", "opModEnergize"), ("ramp_tms", "rampTms")):
        if options.get(key) is not None:
            spec[name] = options[key]
    if options.get("target_w") is not None:
        spec["opModTargetW"] = _watts(options["target_w"])
    for key, name, hint in _DOE_OPTIONS:
        if options.get(key) is not None:
            spec[name] = _watts(options[key], hint)
    raw = options.get("control_json")
    if raw is not None:
        if spec:
            raise click.UsageError("give either --control JSON or the mode options (--fixed-w …), not both")
        try:
            spec = json.loads(raw)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--control") from None
    if not spec and required:
        raise click.UsageError("say what devices should do: --fixed-w, --max-w, --target-w, --connect, "
                               "--energize, --export-limit, --import-limit, --generation-limit, "
                               "--load-limit, --ramp-tms or --control JSON")
    return spec or None


# The CSIP-AUS dynamic operating envelope limits: option key, 2030.5 (csipaus) name, option.
_DOE_OPTIONS = (("exp_lim_w", "opModExpLimW", "--export-limit"), ("imp_lim_w", "opModImpLimW", "--import-limit"),
                ("gen_lim_w", "opModGenLimW", "--generation-limit"), ("load_lim_w", "opModLoadLimW", "--load-limit"))
_CONTROL_KEYS = ("fixed_w", "max_w", "target_w", "connect", "energize", "ramp_tms", "control_json",
                 *(key for key, _, _ in _DOE_OPTIONS))


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    control = {k: options.pop(k) for k in _CONTROL_KEYS}
    return control, options


# -------------------------------------------------------------------------------- DER programs


@click.group("der-program")
def der_program() -> None:
    """DER programs (2030.5): who follows them (members), their default control, their priority.

    A DER program is what a device finds under its FunctionSetAssignments: a priority (primacy),
    a default control it falls back to when no event is active, and the events (DERControls)
    operators and the scheduler publish. Events: `derflex event --help`. Flexibility programs
    (windows, bids, settlement) are `derflex flex`.
    """


@der_program.command("create", epilog=_EPILOG_CONTROL)
@click.option("--primacy", type=click.IntRange(0, 255), required=True,
              help="Priority against the device's other DER programs, 0…255: when two DER programs' controls "
              "conflict, the LOWER number wins (0 = first).")
@click.option("--description", help="A name devices and people see (at most 32 characters).")
@control_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def der_program_create(ctx: Context, primacy: int, description: str | None, as_json: bool, **options: Any) -> None:
    """Create a DER program, optionally with its default control (the mode options).

    \b
    Example:
      derflex der-program create --primacy 2 --description "Peak Saver" --max-w 10000
    """
    from server.services.sep2 import der_programs

    control, _ = _split(options)
    body: dict[str, Any] = {"primacy": primacy, "description": description}
    default = _control(control, required=False)
    if default is not None:
        body["default_control"] = default
    view = run(ctx, lambda s: der_programs.create_der_program(s, body, int(time.time())))
    if as_json:
        _echo_json(view)
        return
    click.echo(f"created DER program {view['id']}")
    _echo_der_program(view)


@der_program.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def der_program_list(ctx: Context, as_json: bool) -> None:
    """List DER programs by primacy, with their member counts and default controls."""
    from server.services.sep2 import der_programs

    views = run(ctx, der_programs.list_der_programs)
    if as_json:
        _echo_json({"programs": views})
        return
    click.echo(f"{len(views)} DER program(s)")
    if views:
        click.echo(f"  {'ID':>5}  {'PRIMACY':>7}  {'MEMBERS':>7}  {'DESCRIPTION':<32}  DEFAULT CONTROL")
    for v in views:
        click.echo(f"  {v['id']:>5}  {v['primacy']:>7}  {v['member_count']:>7}  "
                   f"{v['description'] or '-':<32}  {_control_text(v['default_control'])}")


@der_program.command("show")
@click.argument("der_program_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def der_program_show(ctx: Context, der_program_id: int, as_json: bool) -> None:
    """Show one DER program: primacy, default control, member device ids."""
    from server.services.sep2 import der_programs

    view = run(ctx, lambda s: der_programs.get_der_program(s, der_program_id))
    if as_json:
        _echo_json(view)
    else:
        _echo_der_program(view)


# DefaultDERControl's own fields (IEEE 2030.5 DefaultDERControl): option, 2030.5 name, unit.
_DEFAULT_SETTINGS = (
    ("set_grad_w", "setGradW", "1/100 %/s", "default ramp rate of active power changes: hundredths of a percent "
     "of setMaxW per second (0…65535)"),
    ("set_soft_grad_w", "setSoftGradW", "1/100 %/s", "soft-start ramp rate after enter service, hundredths of "
     "a percent of setMaxW per second (0…65535)"),
    ("set_es_delay", "setESDelay", "1/100 s", "enter service delay, hundredths of a second"),
    ("set_es_high_freq", "setESHighFreq", "1/100 Hz", "enter service: highest frequency, hundredths of a Hz"),
    ("set_es_high_volt", "setESHighVolt", "1/100 %", "enter service: highest voltage, hundredths of a percent "
     "of nominal"),
    ("set_es_low_freq", "setESLowFreq", "1/100 Hz", "enter service: lowest frequency, hundredths of a Hz"),
    ("set_es_low_volt", "setESLowVolt", "1/100 %", "enter service: lowest voltage, hundredths of a percent "
     "of nominal"),
    ("set_es_ramp_tms", "setESRampTms", "1/100 s", "enter service ramp time, hundredths of a second"),
    ("set_es_random_delay", "setESRandomDelay", "1/100 s", "enter service randomized delay, hundredths of a "
     "second"),
)


def _default_setting_options(fn: Any) -> Any:
    for key, name, unit, text in reversed(_DEFAULT_SETTINGS):
        fn = click.option(f"--{key.replace('_', '-')}", key, type=int, metavar=unit, help=f"{name}: {text}.")(fn)
    return click.option("--default-description", "default_description", metavar="TEXT",
                        help="description of the DefaultDERControl itself (at most 32 characters).")(fn)


@der_program.command("default-control", epilog=_EPILOG_CONTROL)
@click.argument("der_program_id", type=int)
@control_options
@_default_setting_options
@pass_ctx
def der_program_default_control(ctx: Context, der_program_id: int, **options: Any) -> None:
    """Set the control DER_PROGRAM_ID's devices follow when no event is active (DefaultDERControl).

    It replaces the previous default as a whole: its modes and its own fields (--set-grad-w,
    the enter-service --set-es-* settings, --default-description). --control JSON may carry every
    field by its 2030.5 name instead, modes and these alike (every DERControlBase field:
    opModFixedPFInjectW, opModFreqDroop, opModTargetVar …). Devices see the change at their
    next poll.

    \b
    Examples:
      derflex der-program default-control 1 --max-w 10000 --set-grad-w 500
      derflex der-program default-control 1 --control '{"opModFixedVar": {"refType": 1, "value": 2000}}'
    """
    from server.services.sep2 import der_programs

    settings = {name: options.pop(key) for key, name, _, _ in _DEFAULT_SETTINGS if options.get(key) is not None}
    description = options.pop("default_description", None)
    for key, _, _, _ in _DEFAULT_SETTINGS:
        options.pop(key, None)
    if description is not None:
        settings["description"] = description
    control, _ = _split(options)
    spec = _control(control, required=not settings)
    if settings:
        if spec is not None and not isinstance(spec, dict):
            raise click.UsageError("--control must be a JSON object")
        spec = {**(spec or {}), **settings}
    view = run(ctx, lambda s: der_programs.set_default_control(s, der_program_id, spec))
    settings = ", ".join(f"{k}={v}" for k, v in (view.get("default_settings") or {}).items())
    click.echo(f"DER program {der_program_id}: default control {_control_text(view['default_control'])}"
               + (f"; {settings}" if settings else "") + f" (version {view['default_control_version']})")


@der_program.group("members")
def members() -> None:
    """Which devices follow a DER program (device ids as shown by `derflex admin devices`)."""


@members.command("add")
@click.argument("der_program_id", type=int)
@click.argument("device_ids", type=int, nargs=-1, required=True)
@pass_ctx
def members_add(ctx: Context, der_program_id: int, device_ids: tuple[int, ...]) -> None:
    """Add devices DEVICE_IDS to DER_PROGRAM_ID (devices already in it are left as they are)."""
    from server.services.sep2 import der_programs

    added = run(ctx, lambda s: der_programs.add_members(s, der_program_id, list(device_ids)))
    click.echo(f"DER program {der_program_id}: {added} device(s) added")


@members.command("remove")
@click.argument("der_program_id", type=int)
@click.argument("device_ids", type=int, nargs=-1, required=True)
@pass_ctx
def members_remove(ctx: Context, der_program_id: int, device_ids: tuple[int, ...]) -> None:
    """Remove devices DEVICE_IDS from DER_PROGRAM_ID; its events no longer reach them."""
    from server.services.sep2 import der_programs

    removed = run(ctx, lambda s: der_programs.remove_members(s, der_program_id, list(device_ids)))
    click.echo(f"DER program {der_program_id}: {removed} device(s) removed")


@members.command("list")
@click.argument("der_program_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def members_list(ctx: Context, der_program_id: int, limit: int, as_json: bool) -> None:
    """List the devices of DER_PROGRAM_ID."""
    from server.services.sep2 import der_programs

    result = run(ctx, lambda s: der_programs.list_members(s, der_program_id, 0, limit))
    if as_json:
        _echo_json(result)
        return
    click.echo(f"DER program {der_program_id}: {result['all']} member(s)")
    for d in result["members"]:
        click.echo(f"  {d['id']:>6}  {d['lfdi']}  sfdi {d['sfdi']:<13} {d['label'] or ''}")


# The old name, for scripts written before `der-program`: the same commands, hidden from --help.
program_alias = click.Group(
    "program",
    commands=der_program.commands,
    hidden=True,
    deprecated="Use 'derflex der-program' (the same commands); 'program' alone means a flexibility program now.",
    help="The old name of `derflex der-program`.",
)


# -------------------------------------------------------------------------------------- events


@click.group("event")
def event() -> None:
    """DER events (DERControls): tell a DER program's devices what to do, and when.

    An event holds a control for an interval. Devices poll for it, answer with Responses
    (received, started, completed, opted out, rejected…), and return to the DER program's default
    control when it ends or is cancelled. A newer event for the same device and time supersedes
    an older one. Times are printed in ISO-8601 UTC with epoch seconds.
    """


@event.command("create", epilog=_EPILOG_CONTROL)
@click.argument("der_program_id", type=int)
@click.option("--start", required=True, metavar="TIME",
              help="When it starts: ISO-8601 with a UTC offset (2026-11-22T16:00-08:00, "
              "2026-11-23T00:00Z), epoch seconds, or 'now'. A time without an offset is refused.")
@click.option("--duration", type=_Duration(), required=True,
              help="How long it lasts: seconds, or with a unit (90m, 2h). At most 7 days.")
@control_options
@click.option("--device", "devices", type=int, multiple=True, metavar="DEVICE_ID",
              help="Only this member device (repeat for more: one event per device, same control). "
              "Default: one event every member follows, including members added later.")
@click.option("--connection-point", "connection_point", metavar="NMI",
              help="Every member device at this connection point (a CSIP-AUS site), one event each.")
@click.option("--description", help="A name devices and people see (at most 32 characters).")
@click.option("--randomize-start", type=click.IntRange(-3600, 3600), metavar="SECONDS",
              help="Each device shifts its start by a random 0…SECONDS (negative: earlier), to spread the load.")
@click.option("--randomize-duration", type=click.IntRange(-3600, 3600), metavar="SECONDS",
              help="Each device shifts its end by a random 0…SECONDS (negative: shorter).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def event_create(ctx: Context, der_program_id: int, start: str, duration: int, devices: tuple[int, ...],
                 connection_point: str | None, description: str | None, randomize_start: int | None,
                 randomize_duration: int | None, as_json: bool, **options: Any) -> None:
    """Publish an event to DER_PROGRAM_ID's devices.

    \b
    Example: discharge at 50 % of rated power for an hour, 4 pm Pacific:
      derflex event create 1 --start 2026-11-22T16:00-08:00 --duration 3600 --fixed-w 5000
    A site's export envelope (CSIP-AUS DOE), 1.5 kW from 10:00 to 15:00 Sydney time:
      derflex event create 1 --start 2026-11-23T10:00+11:00 --duration 5h --export-limit 1500 \
        --connection-point 41020000002
    """
    from server.services.sep2 import der_programs

    control, _ = _split(options)
    now = int(time.time())
    body: dict[str, Any] = {
        "start": now if start.strip().lower() == "now" else start,
        "duration": duration,
        "control": _control(control),
    }
    if devices:
        body["device_ids"] = list(devices)
    if connection_point is not None:
        body["connection_point_id"] = connection_point
    for key, value in (("description", description), ("randomize_start", randomize_start),
                       ("randomize_duration", randomize_duration)):
        if value is not None:
            body[key] = value
    views = run(ctx, lambda s: der_programs.create_events(s, der_program_id, body, now))
    if as_json:
        _echo_json({"events": views})
        return
    click.echo(f"created {len(views)} event(s) in DER program {der_program_id}")
    _echo_events(views)


@event.command("list")
@click.argument("der_program_id", type=int)
@click.option("--all", "include_ended", is_flag=True, help="Also events that have ended.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def event_list(ctx: Context, der_program_id: int, include_ended: bool, limit: int, as_json: bool) -> None:
    """List DER_PROGRAM_ID's events (those not over yet, or --all) with how devices answered.

    "answered" counts devices by their latest Response: a device that said received and then
    completed counts once, as completed.
    """
    from server.services.sep2 import der_programs

    result = run(ctx, lambda s: der_programs.list_events(
        s, der_program_id, int(time.time()), include_ended=include_ended, limit=limit))
    if as_json:
        _echo_json(result)
        return
    shown = len(result["events"])
    more = f", showing {shown}" if shown < result["all"] else ""
    click.echo(f"DER program {der_program_id}: {result['all']} event(s){'' if include_ended else ' not over yet'}{more}")
    _echo_events(result["events"])


@event.command("show")
@click.argument("mrid")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def event_show(ctx: Context, mrid: str, as_json: bool) -> None:
    """Show one event (by its mRID) with how devices answered."""
    from server.services.sep2 import der_programs

    view = run(ctx, lambda s: der_programs.get_event(s, mrid, int(time.time())))
    if as_json:
        _echo_json(view)
    else:
        _echo_events([view])


@event.command("cancel")
@click.argument("mrid")
@click.option("--randomized", is_flag=True,
              help="Let devices return at a random moment within the event's randomization window "
              "(EventStatus 3) instead of all at once (2), to spread the load.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def event_cancel(ctx: Context, mrid: str, randomized: bool, as_json: bool) -> None:
    """Cancel the event MRID. Devices see it cancelled at their next poll and return to the default
    control; it stays listed, as cancelled, until its original end. Cancelling twice changes nothing.
    """
    from server.services.sep2 import der_programs

    view = run(ctx, lambda s: der_programs.cancel_event(s, mrid, int(time.time()), {"randomized": randomized}))
    if as_json:
        _echo_json(view)
        return
    click.echo(f"cancelled event {view['mrid']}")
    _echo_events([view])


# ---------------------------------------------------------------------- FunctionSetAssignments


def _echo_fsa(view: dict[str, Any]) -> None:
    click.echo(f"FunctionSetAssignments {view['id']}  {view['description'] or '(no description)'}")
    click.echo(f"  mRID          {view['mrid']}  (version {view['version']})")
    click.echo(f"  DER programs  {' '.join(str(p) for p in view['der_program_ids']) or 'none'}")
    shown = ", ".join(f"{d['device_id']} (as {d['href']})" for d in view["devices"][:20])
    more = " …" if len(view["devices"]) > 20 else ""
    click.echo(f"  devices       {view['device_count']}{': ' + shown if shown else ''}{more}")


@click.group("fsa")
def fsa_group() -> None:
    """FunctionSetAssignments: which DER programs devices find, grouped as the operator chooses.

    Every device lists its FunctionSetAssignments at /edev/{id}/fsa. Number 1 holds the DER
    programs it is a member of (`derflex der-program members`, flexibility enrollments); the FSAs
    made here come after it (2, 3, … per device), each with its own mRID, description, version
    and DER programs. One FSA may be given to a group of devices.
    """


@fsa_group.command("create")
@click.option("--device", "devices", type=int, multiple=True, required=True, metavar="DEVICE_ID",
              help="A device that gets it (repeat for a group).")
@click.option("--der-program", "der_programs", type=int, multiple=True, metavar="DER_PROGRAM_ID",
              help="A DER program it assigns (repeat for more).")
@click.option("--description", help="A name devices and people see (at most 32 characters).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def fsa_create(ctx: Context, devices: tuple[int, ...], der_programs: tuple[int, ...], description: str | None,
               as_json: bool) -> None:
    """Create a FunctionSetAssignments for one device or a group.

    \b
    Example:
      derflex fsa create --device 3 --device 4 --der-program 1 --der-program 2 --description "Feeder 12"
    """
    from server.services.sep2 import fsa

    body: dict[str, Any] = {"device_ids": list(devices), "der_program_ids": list(der_programs)}
    if description is not None:
        body["description"] = description
    view = run(ctx, lambda s: fsa.create_fsa(s, body, int(time.time())))
    if as_json:
        _echo_json(view)
        return
    click.echo(f"created FunctionSetAssignments {view['id']}")
    _echo_fsa(view)


@fsa_group.command("list")
@click.option("--device", "device_id", type=int, help="Only the FSAs of this device.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def fsa_list(ctx: Context, device_id: int | None, as_json: bool) -> None:
    """List the operator's FunctionSetAssignments (FSA 1 of each device is its memberships)."""
    from server.services.sep2 import fsa

    views = run(ctx, lambda s: fsa.list_fsas(s, device_id))
    if as_json:
        _echo_json({"fsas": views})
        return
    click.echo(f"{len(views)} FunctionSetAssignments")
    for v in views:
        click.echo(f"  {v['id']:>5}  {v['description'] or '-':<32}  DER programs "
                   f"{','.join(str(p) for p in v['der_program_ids']) or '-'}  devices {v['device_count']}")


@fsa_group.command("show")
@click.argument("fsa_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def fsa_show(ctx: Context, fsa_id: int, as_json: bool) -> None:
    """Show one FunctionSetAssignments: its DER programs and devices."""
    from server.services.sep2 import fsa

    view = run(ctx, lambda s: fsa.get_fsa(s, fsa_id))
    if as_json:
        _echo_json(view)
    else:
        _echo_fsa(view)


@fsa_group.command("delete")
@click.argument("fsa_id", type=int)
@pass_ctx
def fsa_delete(ctx: Context, fsa_id: int) -> None:
    """Delete FSA_ID: its devices no longer list it nor reach its DER programs through it."""
    from server.services.sep2 import fsa

    run(ctx, lambda s: fsa.delete_fsa(s, fsa_id))
    click.echo(f"deleted FunctionSetAssignments {fsa_id}")


def _fsa_change(action: str, what: str) -> Any:
    from server.services.sep2 import fsa

    calls = {("add", "der-programs"): fsa.assign_der_programs, ("remove", "der-programs"): fsa.unassign_der_programs,
             ("add", "devices"): fsa.assign_devices, ("remove", "devices"): fsa.unassign_devices}
    return calls[(action, what)]


for _what, _noun in (("der-programs", "DER_PROGRAM_IDS"), ("devices", "DEVICE_IDS")):
    @fsa_group.group(_what, help=f"The {_what.replace('-', ' ')} of a FunctionSetAssignments.")
    def _sub() -> None:
        pass

    for _action in ("add", "remove"):
        def _make(action: str = _action, what: str = _what) -> Any:
            @click.argument("fsa_id", type=int)
            @click.argument("ids", type=int, nargs=-1, required=True)
            @pass_ctx
            def command(ctx: Context, fsa_id: int, ids: tuple[int, ...]) -> None:
                done = run(ctx, lambda s: _fsa_change(action, what)(s, fsa_id, list(ids)))
                verb = "added" if action == "add" else "removed"
                click.echo(f"FunctionSetAssignments {fsa_id}: {done} {what.replace('-', ' ')} {verb}")
            return command

        _sub.command(_action, help=f"{_action.capitalize()} {_noun} {'to' if _action == 'add' else 'from'} FSA_ID.")(_make())
