"""The BPP's catalog side (docs/beckn.md): programs as catalog items (`search`), quotes (`select`),
the seed's market clearing (`aggregate`) and the meta lists.

Rules:

* Catalog (`on_search`): `catalog.providers[0]` is the operator (id = our bpp_id). Every ACTIVE
  program is an item `program-{id}` (descriptor, `price` = the price cap per kWh, category
  `demand-flexibility`, fulfillment `window-{id}`, a `program` tag group); the provider's
  fulfillments hold one `PEAK-WINDOW` per listed item with its rule (`window` tags) and its next
  windows as stops (planned or published rows of the coming week). No match: the provider with no
  items (never an error).
* Search filters, all optional, combined with AND: text (`intent.descriptor.name`) in the program's
  name or description, case-insensitive; category (`intent.category.descriptor.code` or
  `intent.category.id`) equal to `demand-flexibility`; device kinds (every
  `intent.fulfillment.tags[].list[]` tag with code `device-kind`; a program matches when it accepts
  at least one of them; an unknown kind is 30000); grid location
  (`intent.fulfillment.stops[0].location.area_code`): programs with no grid nodes (the whole
  area) and programs naming that node or one of its ancestors (a name that is not one of our
  grid nodes matches only the whole-area programs); `intent.provider.id`, when given, must be ours.
* Quote (`on_select`): capacity = `items[0].quantity.selected.measure` {value, unit "kW"} (value a
  number or a decimal string; absent: 1 kW, so the quote is per kW). It must be > 0 (30000) and
  at most the program's largest requested kW (40002). Pay = capacity x the window's nominal hours x
  the most paid per kWh: the price cap (pay_as_clear) or the fixed rate (fixed), one breakup line.
* Aggregate (seed §3.2): participants with a `bidCurve` (power convention, [{price, powerKW}])
  are cleared exactly by programs.clearing after `power_to_reduction` (baseline = power at the
  lowest price); participants without one (a `locationalPriceAdder`) take no part. `priceCap`
  defaults to the highest price of any curve; `requestedKW` defaults to everything offered at the
  cap. Answer: clearingPrice, clearingQuantityKW (the exact float sum of the reductions), feasible,
  setpoints [{era, setpointKW (power convention = baseline + reduction), baselineKW,
  reductionKW}], timestamp (timeWindow.start when given, else now). Nothing is stored.
* Every number the schema types as DecimalValue travels as a decimal string (`dec`).

Errors are `BecknError(message, path, code)` with the v1 code; nothing here writes the database.

The catalog `search` filters is built once and reused (`_Catalog`): per database, for as long as
the "flex" change counter (programs, windows, grid nodes: server.db.changes) stays where it was and
no window ends or enters the week's horizon — a search then costs one counter read and the filters.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sqlalchemy.orm import Session

from programs.clearing import CurveBook, clear
from programs.curves import CurveError, power_to_reduction
from programs.kinds import DeviceKind
from programs.model import Program
from programs.publishing import is_open
from server.beckn.errors import ErrorCode
from server.beckn.timefmt import parse_timestamp, render_timestamp
from server.beckn.values import arr, dec, fail, money, number, obj, tag, tag_group, tag_values, text, ts
from server.db import changes
from server.db import flex as store
from server.db.models import ChangeCounter
from server.services.flex import grid_nodes, stored
from server.services.bpp.provider import Provider


CATEGORY = "demand-flexibility"
ITEM_PREFIX = "program-"
WINDOW_PREFIX = "window-"
BID_CURVE_FORMAT = '[{"price": p, "powerKW": kw}, …]'
WINDOW_HORIZON_S = 7 * 86_400
MAX_PARTICIPANTS = 10_000
MAX_CURVE_POINTS = 100

#: get_cancellation_reasons: id -> (code, name)
CANCELLATION_REASONS: dict[str, tuple[str, str]] = {
    "1": ("customer-request", "Customer request"),
    "2": ("device-replaced", "Device replaced"),
    "3": ("moved-out", "Moved out"),
}
#: get_rating_categories (v1.1.0 Rating.rating_category values)
RATING_CATEGORIES = ("Order", "Fulfillment")


# --------------------------------------------------------------------------------- programs


def program_id_of(item_id: Any, path: str) -> int:
    """The program of an item id `program-{id}` (30004 when it is not one)."""
    item_id = text(item_id, path)
    assert item_id is not None
    digits = item_id.removeprefix(ITEM_PREFIX)
    if not item_id.startswith(ITEM_PREFIX) or not digits.isdigit() or len(digits) > 9 or not digits.isascii():
        raise fail(f"no item {item_id[:60]!r} (items are program-{{id}})", path, ErrorCode.ITEM_NOT_FOUND)
    return int(digits)


def active_program(session: Session, program_id: int, path: str) -> tuple[store.FlexProgram, Program]:
    row = session.get(store.FlexProgram, program_id)
    if row is None or row.state != "active":
        raise fail(f"no item program-{program_id}: no such active program", path, ErrorCode.ITEM_NOT_FOUND)
    return row, stored.program_of(row)


def check_provider(order_or_intent: Mapping[str, Any], path: str, provider: Provider) -> None:
    given = obj(order_or_intent.get("provider"), f"{path}.provider", required=False).get("id")
    if given is not None and given != provider.bpp_id:
        raise fail(f"no provider {str(given)[:60]!r} here (this BPP's provider is {provider.bpp_id})",
                   f"{path}.provider.id", ErrorCode.PROVIDER_NOT_FOUND)


def _requested(program: Program) -> list[float]:
    req = program.requested_kw
    return list(req) if isinstance(req, tuple) else [float(req)]


def program_item(row: store.FlexProgram, program: Program) -> dict[str, Any]:
    """A program as a catalog item (docs/beckn.md table)."""
    descriptor: dict[str, Any] = {"name": program.name, "code": CATEGORY}
    if program.description:
        descriptor["short_desc"] = program.description
    tags = [
        tag("requested-kw", ",".join(dec(v) for v in _requested(program))),
        tag("price-floor", dec(program.price_floor)),
        tag("incentive", program.incentive.kind),
    ]
    if program.incentive.rate_per_kwh is not None:
        tags.append(tag("rate-per-kwh", dec(program.incentive.rate_per_kwh)))
    tags += [
        tag("lead-time-s", str(program.lead_time_s)),
        tag("eligible-kinds", ",".join(sorted(k.value for k in program.eligible_kinds))),
        tag("grid-nodes", ",".join(program.grid_node_ids)),
        tag("bid-curve-format", BID_CURVE_FORMAT),
    ]
    return {
        "id": f"{ITEM_PREFIX}{row.id}",
        "descriptor": descriptor,
        "price": {"currency": program.currency, "value": dec(program.price_cap)},
        "category_ids": [CATEGORY],
        "fulfillment_ids": [f"{WINDOW_PREFIX}{row.id}"],
        "tags": [tag_group("program", tags, "Program terms")],
    }


def window_fulfillment(session: Session, row: store.FlexProgram, program: Program, now: int) -> dict[str, Any]:
    """`window-{id}`: the program's peak-window rule and its next windows (as stops)."""
    return _window_fulfillment(session, row, program, now)[0]


def _window_fulfillment(session: Session, row: store.FlexProgram, program: Program, now: int) -> tuple[dict[str, Any], int]:
    """window_fulfillment, and the first second at which it would differ without any write: a
    listed window ends, or a later one enters the horizon."""
    rule = program.window.to_dict()
    windows = store.windows(session, row.id, since_end=now, limit=20)
    stops = [
        {"id": w.window_key, "time": {"range": {"start": ts(w.start), "end": ts(w.end)}}}
        for w in windows
        if is_open(w.state) and w.start < now + WINDOW_HORIZON_S
    ]
    until = min([w.end for w in windows] + [w.start - WINDOW_HORIZON_S + 1 for w in windows
                                            if w.start >= now + WINDOW_HORIZON_S], default=now + _CATALOG_MAX_S)
    out: dict[str, Any] = {
        "id": f"{WINDOW_PREFIX}{row.id}",
        "type": "PEAK-WINDOW",
        "tags": [tag_group("window", [
            tag("weekdays", ",".join(rule["weekdays"])), tag("start", rule["start"]),
            tag("end", rule["end"]), tag("tz", rule["tz"]),
        ], "Peak window")],
    }
    if stops:
        out["stops"] = stops
    return out, until


# ------------------------------------------------------------------------- the cached catalog

FLEX_FAMILY = "flex"  # the change counter of flex_programs, flex_windows and grid_nodes
_CATALOG_MAX_S = 300  # a bound for changes that bypass derflex (hand-made SQL), as response caches


@dataclass(frozen=True)
class _Catalog:
    """Every active program as (Program, its item, its fulfillment), and the grid tree; true while
    the "flex" counter is `counter` and the clock is before `until`. Shared by every search:
    read-only."""

    counter: int | None
    until: int
    entries: tuple[tuple[Program, dict[str, Any], dict[str, Any]], ...]
    tree: Any


_catalogs: "weakref.WeakKeyDictionary[Any, _Catalog]" = weakref.WeakKeyDictionary()  # per engine
_catalogs_lock = threading.Lock()


def _catalog(session: Session, now: int) -> _Catalog:
    """The catalog as the programs stand (cached, see the module docstring)."""
    counter = session.scalar(sa.select(ChangeCounter.value).where(ChangeCounter.family == FLEX_FAMILY))
    engine = session.get_bind()
    mine = FLEX_FAMILY in changes.pending(session)  # this transaction changed programs: build, keep nothing
    cached = None if mine else _catalogs.get(engine)
    if cached is not None and cached.counter == counter and now < cached.until:
        return cached
    until = now + _CATALOG_MAX_S
    entries = []
    for row in store.programs(session, active_only=True):
        program = stored.program_of(row)
        fulfillment, changes_at = _window_fulfillment(session, row, program, now)
        until = min(until, changes_at)
        entries.append((program, program_item(row, program), fulfillment))
    tree, _ = grid_nodes.grid_tree(session)
    built = _Catalog(counter, until, tuple(entries), tree)
    if not mine:
        with _catalogs_lock:
            _catalogs[engine] = built
    return built


# ----------------------------------------------------------------------------------- search


def search(session: Session, message: dict[str, Any], provider: Provider, now: int) -> dict[str, Any]:
    intent = obj(message.get("intent"), "message.intent", required=False)
    descriptor = obj(intent.get("descriptor"), "message.intent.descriptor", required=False)
    needle = text(descriptor.get("name"), "message.intent.descriptor.name", required=False)
    category = obj(intent.get("category"), "message.intent.category", required=False)
    cat_code = obj(category.get("descriptor"), "message.intent.category.descriptor", required=False).get("code")
    if cat_code is None:
        cat_code = category.get("id")
    fulfillment = obj(intent.get("fulfillment"), "message.intent.fulfillment", required=False)
    kinds: set[DeviceKind] = set()
    for _group, code, value, where in tag_values(fulfillment.get("tags"), "message.intent.fulfillment.tags"):
        if code == "device-kind":
            try:
                kinds.add(DeviceKind(value))
            except ValueError:
                raise fail(f"unknown device kind {str(value)[:40]!r} (known: "
                           f"{', '.join(k.value for k in DeviceKind)})", f"{where}.value") from None
    stops = arr(fulfillment.get("stops"), "message.intent.fulfillment.stops", required=False)
    area = None
    if stops:
        location = obj(obj(stops[0], "message.intent.fulfillment.stops[0]").get("location"),
                       "message.intent.fulfillment.stops[0].location", required=False)
        area = text(location.get("area_code"), "message.intent.fulfillment.stops[0].location.area_code",
                    required=False, max_len=64)
    given_provider = obj(intent.get("provider"), "message.intent.provider", required=False).get("id")

    items, fulfillments = [], []
    if given_provider is None or given_provider == provider.bpp_id:
        catalog = _catalog(session, now)
        served: set[str] | None = None  # the area node and its ancestors
        if area is not None:
            served = set(catalog.tree.path(area)) if area in catalog.tree.index else set()
        for program, item, fulfillment in catalog.entries:
            if needle is not None and needle.casefold() not in program.name.casefold() \
                    and needle.casefold() not in program.description.casefold():
                continue
            if cat_code is not None and cat_code != CATEGORY:
                continue
            if kinds and not kinds & program.eligible_kinds:
                continue
            if served is not None and program.grid_node_ids and not served & set(program.grid_node_ids):
                continue
            items.append(item)
            fulfillments.append(fulfillment)
    return {"catalog": {
        "descriptor": {"name": provider.name},
        "providers": [{
            "id": provider.bpp_id,
            "descriptor": {"name": provider.name},
            "categories": [{"id": CATEGORY, "descriptor": {"code": CATEGORY, "name": "Demand flexibility"}}],
            "fulfillments": fulfillments,
            "items": items,
        }],
    }}


# ----------------------------------------------------------------------------------- select


def capacity_of(item: Mapping[str, Any], path: str, program: Program) -> float | None:
    """The selected capacity in kW (None when not given), within the program's request."""
    quantity = obj(item.get("quantity"), f"{path}.quantity", required=False)
    selected = obj(quantity.get("selected"), f"{path}.quantity.selected", required=False)
    measure = obj(selected.get("measure"), f"{path}.quantity.selected.measure", required=False)
    if not measure:
        return None
    where = f"{path}.quantity.selected.measure"
    unit = measure.get("unit")
    if unit != "kW":
        raise fail(f"unit must be \"kW\", not {str(unit)[:20]!r}", f"{where}.unit")
    kw = number(measure.get("value"), f"{where}.value")
    if kw <= 0:
        raise fail("must be above 0 kW", f"{where}.value")
    most = max(_requested(program))
    if kw > most:
        raise fail(f"{dec(kw)} kW is more than this program asks for ({dec(most)} kW)", f"{where}.value",
                   ErrorCode.QUANTITY_UNAVAILABLE)
    return kw


def quote(item_id: str, program: Program, capacity_kw: float | None) -> dict[str, Any]:
    """The expected pay for `capacity_kw` (1 kW when None) over one window at the most paid per kWh."""
    kw = 1.0 if capacity_kw is None else capacity_kw
    hours = program.window.nominal_s / 3600.0
    fixed = program.incentive.kind == "fixed" and program.incentive.rate_per_kwh is not None
    rate = float(program.incentive.rate_per_kwh) if fixed else program.price_cap  # type: ignore[arg-type]
    basis = "fixed rate" if fixed else "price cap"
    price = {"currency": program.currency, "value": money(kw * hours * rate)}
    return {
        "price": price,
        "breakup": [{
            "item": {"id": item_id},
            "title": f"{dec(kw)} kW x {dec(round(hours, 6))} h x {dec(rate)} {program.currency}/kWh ({basis}), "
                     "one window" + (" (per kW)" if capacity_kw is None else ""),
            "price": price,
        }],
    }


def order_item(row: store.FlexProgram, program: Program, capacity_kw: float | None) -> dict[str, Any]:
    item = program_item(row, program)
    out = {k: item[k] for k in ("id", "descriptor", "price", "category_ids", "fulfillment_ids")}
    if capacity_kw is not None:
        out["quantity"] = {"selected": {"measure": {"value": dec(capacity_kw), "unit": "kW"}}}
    return out


def ordered_program(session: Session, order: Mapping[str, Any]) -> tuple[store.FlexProgram, Program, float | None]:
    """The one item of an order (select, init, confirm): its active program and the capacity asked."""
    items = arr(order.get("items"), "message.order.items")
    if len(items) != 1:
        raise fail("must hold exactly one item (one program per order)", "message.order.items")
    item = obj(items[0], "message.order.items[0]")
    row, program = active_program(session, program_id_of(item.get("id"), "message.order.items[0].id"),
                                  "message.order.items[0].id")
    return row, program, capacity_of(item, "message.order.items[0]", program)


def select(session: Session, message: dict[str, Any], provider: Provider, now: int) -> dict[str, Any]:
    order = obj(message.get("order"), "message.order")
    check_provider(order, "message.order", provider)
    row, program, kw = ordered_program(session, order)
    return {"order": {
        "provider": {"id": provider.bpp_id, "descriptor": {"name": provider.name}},
        "items": [order_item(row, program, kw)],
        "fulfillments": [window_fulfillment(session, row, program, now)],
        "quote": quote(f"{ITEM_PREFIX}{row.id}", program, kw),
    }}


# -------------------------------------------------------------------------------- aggregate


def aggregate(message: dict[str, Any], now: int) -> dict[str, Any]:
    path = "message.aggregationRequest"
    req = obj(message.get("aggregationRequest"), path)
    kind = req.get("aggregationType")
    if kind is not None and kind != "MARKET_CLEARING":
        raise fail("only MARKET_CLEARING is offered", f"{path}.aggregationType")
    participants = arr(req.get("participants"), f"{path}.participants", max_len=MAX_PARTICIPANTS)
    eras: list[str] = []
    curves, baselines = [], []
    seen: set[str] = set()
    for i, p in enumerate(participants):
        where = f"{path}.participants[{i}]"
        p = obj(p, where)
        era = text(p.get("era"), f"{where}.era")
        assert era is not None
        if era in seen:
            raise fail(f"era {era[:60]!r} is listed twice", f"{where}.era")
        seen.add(era)
        if p.get("bidCurve") is None:
            continue  # e.g. a locationalPriceAdder: no curve to clear
        points = arr(p.get("bidCurve"), f"{where}.bidCurve", max_len=MAX_CURVE_POINTS)
        try:
            curve, baseline = power_to_reduction(points)
        except CurveError as exc:
            raise fail(str(exc), f"{where}.bidCurve") from None
        eras.append(era)
        curves.append(curve)
        baselines.append(baseline)
    if not curves:
        raise fail("no participant has a bidCurve: nothing to clear", f"{path}.participants")
    book = CurveBook.from_curves(curves)
    cap = number(req["priceCap"], f"{path}.priceCap") if req.get("priceCap") is not None else book.p_max
    if req.get("priceCap") is not None and cap <= 0:
        raise fail("must be above 0", f"{path}.priceCap")
    if req.get("requestedKW") is not None:
        wanted = number(req["requestedKW"], f"{path}.requestedKW")
        if wanted < 0:
            raise fail("must be 0 or more", f"{path}.requestedKW")
    else:
        wanted = book.F(cap)
    stamp = ts(now)
    window = obj(req.get("timeWindow"), f"{path}.timeWindow", required=False)
    if window:
        try:
            start = parse_timestamp(text(window.get("start"), f"{path}.timeWindow.start") or "")
            end = parse_timestamp(text(window.get("end"), f"{path}.timeWindow.end") or "")
        except ValueError as exc:
            raise fail(str(exc), f"{path}.timeWindow") from None
        if end <= start:
            raise fail("end must be after start", f"{path}.timeWindow.end")
        stamp = render_timestamp(start)
    result = clear(book, wanted, cap)
    reductions = [float(x) for x in result.setpoints]
    return {"aggregationResult": {
        "clearingPrice": float(result.price),
        "clearingQuantityKW": math.fsum(reductions),
        "requestedKW": float(wanted),
        "feasible": bool(result.feasible),
        "setpoints": [{"era": era, "setpointKW": b + r, "baselineKW": b, "reductionKW": r}
                      for era, b, r in zip(eras, baselines, reductions)],
        "timestamp": stamp,
    }}


# ------------------------------------------------------------------------------------- meta


def rating_categories() -> dict[str, Any]:
    return {"rating_categories": list(RATING_CATEGORIES)}


def cancellation_reasons() -> dict[str, Any]:
    return {"cancellation_reasons": [
        {"id": rid, "descriptor": {"code": code, "name": name}} for rid, (code, name) in CANCELLATION_REASONS.items()
    ]}
