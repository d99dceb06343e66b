"""The program authoring form: every field of a program (programs.model's JSON form) as an HTML
form field, the posted form back to that JSON, and the domain's errors placed beside their fields.

A field's name is its dotted path in the JSON form ("window.start", "measurement.baseline.x"). What
the browser posts is text; `to_program_json` turns each field into its JSON type (an empty optional
field is left out, so the domain's default applies) and notes what is not even a number.
`field_errors` splits a ProgramError's "field: problem" messages by field; a message about a field
with no input of its own (a whole object) goes to the nearest field shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from programs.baselines import ADJUSTMENTS, DAY_TYPES, METHODS
from programs.kinds import DeviceKind
from programs.model import INCENTIVE_KINDS, Program, ProgramError
from programs.settlement import TAX_MODES

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Field:
    name: str  # the dotted path in the program's JSON form
    label: str
    kind: str  # text | number | int | choice | checks | bool | numbers | texts | dates | fraction
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    title: str
    fields: tuple[Field, ...]
    open: bool = True


SECTIONS: tuple[Section, ...] = (
    Section("Program", (
        Field("name", "Name", "text", "What operators and customers call it (1–100 characters).", True),
        Field("description", "Short description", "text", "Shown to devices (at most 32 bytes)."),
        Field("currency", "Currency", "text", "ISO 4217 code, e.g. USD, EUR, AUD.", True),
    )),
    Section("When", (
        Field("window.weekdays", "Weekdays", "checks", "The days the window recurs on.", True, WEEKDAYS),
        Field("window.start", "Starts at", "text", "Wall-clock time HH:MM in the time zone below.", True),
        Field("window.end", "Ends at", "text", "HH:MM; an end at or before the start ends the next day.", True),
        Field("window.tz", "Time zone", "text", "IANA name, e.g. America/New_York.", True),
        Field("lead_time_s", "Publish ahead (s)", "int", "Devices get their controls this long before the start (0–604800; default 3600)."),
        Field("randomize_start_s", "Randomize start (s)", "int", "Spread device starts by up to this much (0–3600)."),
    )),
    Section("What is asked", (
        Field("requested_kw", "Requested reduction (kW)", "numbers",
              "One number for the whole window, or one per interval separated by commas (a profile); "
              "empty (or 0) for an envelope program."),
        Field("envelope.export_limit_kw", "Envelope: export limit (kW)", "number",
              "An envelope program asks each site to export at most this in every window instead of a reduction "
              "(0: no export); give this, the import limit or both, and a fixed incentive."),
        Field("envelope.import_limit_kw", "Envelope: import limit (kW)", "number",
              "Each site may import at most this in every window; empty: no limit that way."),
        Field("interval_s", "Interval (s)", "int", "Clear per interval of this length (60 s … the window); empty: one clearing per window."),
        Field("eligible_kinds", "Eligible device kinds", "checks", "Which devices may take part.", True,
              tuple(k.value for k in DeviceKind)),
        Field("grid_node_ids", "Grid nodes", "texts", "Comma-separated node names; empty: the whole service area."),
        Field("primacy", "Primacy", "int", "2030.5 primacy 0–255; lower wins over other programs (default 128)."),
    )),
    Section("Price and pay", (
        Field("price_cap", "Price cap (per kWh)", "number", "The most the utility pays per kWh.", True),
        Field("price_floor", "Price floor (per kWh)", "number", "At least 0 and below the cap (default 0)."),
        Field("incentive.kind", "Clearing rule", "choice",
              "pay_as_clear pays the clearing price; fixed pays the rate below (an envelope program is fixed).", True,
              INCENTIVE_KINDS),
        Field("incentive.rate_per_kwh", "Fixed rate (per kWh)", "number", "Only for a fixed incentive."),
        Field("incentive.under_delivery_per_kwh", "Under-delivery charge (per kWh)", "number", "Charged per kWh short of the setpoint (an envelope program: per kWh outside the envelope; default 0)."),
    )),
    Section("Measurement & verification", (
        Field("measurement.interval_s", "M&V interval (s)", "int", "Must divide an hour; empty: chosen from the window."),
        Field("measurement.delay_s", "Settle after (s)", "int", "Wait this long after the window for late readings (default 900)."),
        Field("measurement.resettle_days", "Re-settle for (days)", "int", "Late readings re-settle a window this long (default 3)."),
        Field("measurement.allow_net_negative", "Penalties may exceed earnings", "bool"),
        Field("measurement.holidays", "Holidays", "dates", "Local dates counted as weekend days, comma-separated (2026-12-25)."),
        Field("measurement.excluded_days", "Excluded days", "dates", "Local dates never used as baseline days."),
        Field("measurement.baseline.method", "Baseline method", "choice", "", False, METHODS),
        Field("measurement.baseline.x", "Baseline: keep X days", "int", "X of Y (default 10)."),
        Field("measurement.baseline.y", "Baseline: of Y days", "int", "(default 10)"),
        Field("measurement.baseline.adjustment", "Day-of adjustment", "choice", "", False, ADJUSTMENTS),
        Field("measurement.baseline.cap", "Adjustment cap", "number", "Largest adjustment as a fraction (default 0.2)."),
        Field("measurement.baseline.upward_only", "Adjust upward only", "bool"),
        Field("measurement.baseline.adjust_from_h", "Adjust from (hours before)", "number", "(default 4)"),
        Field("measurement.baseline.adjust_to_h", "Adjust to (hours before)", "number", "(default 1)"),
        Field("measurement.baseline.min_days", "Minimum days", "int", "Fewer days than this: no baseline (default min(5, X))."),
        Field("measurement.baseline.lookback_days", "Look back (days)", "int", "(default 45)"),
        Field("measurement.baseline.day_types", "Day types", "choice", "", False, DAY_TYPES),
    ), open=False),
    Section("Revenue split", (
        Field("measurement.split.tax_rate", "Tax rate", "fraction", "A fraction, e.g. 0.1 or 1/9 (default 0)."),
        Field("measurement.split.tax_mode", "Tax mode", "choice", "", False, TAX_MODES),
        Field("measurement.split.grid_fee_per_kwh", "Grid fee per kWh", "fraction", "Give this or the grid fee rate, not both."),
        Field("measurement.split.grid_fee_rate", "Grid fee rate", "fraction", "A fraction of the gross."),
        Field("measurement.split.aggregator_fee_rate", "Aggregator fee rate", "fraction", "A fraction of the gross (default 0)."),
        Field("measurement.split.aggregator_fee_fixed_minor", "Aggregator fee per device (minor units)", "int"),
        Field("measurement.split.grid_operator", "Grid operator (party)", "text"),
        Field("measurement.split.aggregator", "Aggregator (party)", "text"),
        Field("measurement.split.government", "Government (party)", "text"),
    ), open=False),
)
FIELDS: dict[str, Field] = {f.name: f for s in SECTIONS for f in s.fields}
_OBJECTS = ("window", "incentive", "envelope", "measurement", "measurement.baseline", "measurement.split")


def _set(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        out = out.setdefault(p, {})
    out[last] = value


def _get(data: Mapping[str, Any], path: str) -> Any:
    cur: Any = data
    for p in path.split("."):
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def to_program_json(form: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The posted form (a MultiDict) as the program's JSON form, and the fields that were not even
    of their type (field → messages)."""
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for f in FIELDS.values():
        if f.kind == "checks":
            values = [v for v in form.getlist(f.name) if v in f.choices]
            _set(out, f.name, values)
            continue
        if f.kind == "bool":
            if form.get(f.name):
                _set(out, f.name, True)
            continue
        raw = (form.get(f.name) or "").strip()
        if not raw:
            if f.required and f.kind in ("text", "choice"):
                _set(out, f.name, "")  # the domain names what is missing
            continue
        try:
            if f.kind in ("text", "choice", "fraction"):
                value: Any = raw
            elif f.kind == "int":
                value = int(raw)
            elif f.kind == "number":
                value = _number(raw)
            elif f.kind == "numbers":
                parts = [_number(p.strip()) for p in raw.split(",") if p.strip()]
                value = parts[0] if len(parts) == 1 and "," not in raw else parts
            elif f.kind in ("texts", "dates"):
                value = [p.strip() for p in raw.split(",") if p.strip()]
            else:
                value = raw
        except ValueError:
            want = "a whole number" if f.kind == "int" else "a number" if f.kind == "number" else "numbers separated by commas"
            errors.setdefault(f.name, []).append(f"must be {want}, got {raw[:40]!r}")
            continue
        _set(out, f.name, value)
    if "incentive" in out and out["incentive"].get("kind") == "pay_as_clear":
        out["incentive"].pop("rate_per_kwh", None)
    return out, errors


def field_errors(exc: ProgramError) -> dict[str, list[str]]:
    """A ProgramError's messages by the form field they are about."""
    out: dict[str, list[str]] = {}
    for message in exc.errors:
        head, _, rest = message.partition(":")
        name = head.strip()
        if name not in FIELDS:
            if name in _OBJECTS:
                name = next(f for f in FIELDS if f.startswith(name + "."))
            elif name.startswith("window."):  # "window.weekdays[2]"-style details
                name = name.split("[")[0]
            if name not in FIELDS:
                name = ""
        out.setdefault(name, []).append(rest.strip() if name else message)
    return out


def check(form: Any) -> tuple[dict[str, Any], Program | None, dict[str, list[str]]]:
    """The posted form checked by the domain: (JSON form, the Program or None, errors by field)."""
    data, errors = to_program_json(form)
    if errors:
        return data, None, errors
    try:
        return data, Program.from_dict(data), {}
    except ProgramError as exc:
        return data, None, field_errors(exc)


def values_of(program_json: Mapping[str, Any]) -> dict[str, Any]:
    """What each form field shows for a program's JSON form (as stored: Program.to_dict())."""
    out: dict[str, Any] = {}
    for f in FIELDS.values():
        v = _get(program_json, f.name)
        if v is None:
            out[f.name] = [] if f.kind == "checks" else ""
        elif f.kind == "checks":
            out[f.name] = [WEEKDAYS[x] if isinstance(x, int) else x for x in v]
        elif f.kind in ("numbers", "texts", "dates") and isinstance(v, list):
            out[f.name] = ", ".join(_fmt(x) for x in v)
        elif f.kind == "bool":
            out[f.name] = bool(v)
        else:
            out[f.name] = _fmt(v)
    return out


def values_posted(form: Any) -> dict[str, Any]:
    """What the operator typed, shown again beside the errors."""
    out: dict[str, Any] = {}
    for f in FIELDS.values():
        if f.kind == "checks":
            out[f.name] = form.getlist(f.name)
        elif f.kind == "bool":
            out[f.name] = bool(form.get(f.name))
        else:
            out[f.name] = form.get(f.name, "")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


DEFAULTS: dict[str, Any] = {
    "currency": "USD", "window.weekdays": ["mon", "tue", "wed", "thu", "fri"], "window.start": "17:00",
    "window.end": "20:00", "window.tz": "UTC", "incentive.kind": "pay_as_clear", "price_cap": "0.5",
    "eligible_kinds": ["battery", "ev_charger", "load"],
}
