"""The JSON-LD attribute packs this BPP serves, and readers/builders for the ones it fills.

A core object's `*Attributes` slot holds `{"@context": <URI>, "@type": <name>, ...}` (core
`Attributes` requires both). We serve these packs (DEG `specification/schema/...`; context URIs as
the DEG devkits write them), each in the slots listed:

    slot                    @type
    resourceAttributes      DemandFlexNeed
    offerAttributes         DemandFlexBuyOffer
    contractAttributes      DEGContract          (also inside DemandFlexBuyOffer)
    commitmentAttributes    TimeSeries           (BecknTimeSeries v1.0: the bid curve)
    considerationAttributes SettlementTerm, RevenueFlow
    performanceAttributes   DemandFlexPerformance
    settlementAttributes    SettlementTerm

Any other `*Attributes` object in a request, an `@type` not served in its slot, or a served type
under another `@context` is refused at once (400, 40007 "schema pack not supported", naming the
path): we would not understand it, so we do not take it. `SettlementTerm` and `Quantity` are named by
the devkits but published nowhere; we accept them as the devkits write them.

TimeSeries (DemandFlexNeed and BecknTimeSeries share the shape): `intervalPeriod {start,
duration}`, `payloadDescriptors[] {objectType, payloadType, units, insertedBy}`, `intervals[] {id,
payloads[] {type, values[]}}`. `read_series` gives the columns by payload type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.beckn.timefmt import parse_duration, parse_timestamp
from server.beckn_v2.errors import V2Code, V2Error

SCHEMA_BASE = "https://schema.nfh.global"
CONTEXTS: Mapping[str, str] = {
    "DemandFlexNeed": f"{SCHEMA_BASE}/DemandFlexNeed/v2.0/context.jsonld",
    "DemandFlexBuyOffer": f"{SCHEMA_BASE}/DemandFlexBuyOffer/v2.0/context.jsonld",
    "DEGContract": f"{SCHEMA_BASE}/DEGContract/v2.0/context.jsonld",
    "TimeSeries": f"{SCHEMA_BASE}/BecknTimeSeries/v1.0/context.jsonld",
    "DemandFlexPerformance": f"{SCHEMA_BASE}/DemandFlexPerformance/v2.0/context.jsonld",
    "RevenueFlow": f"{SCHEMA_BASE}/RevenueFlow/v2.0/context.jsonld",
    "SettlementTerm": f"{SCHEMA_BASE}/SettlementTerm/2.0/context.jsonld",
    "PageInfo": f"{SCHEMA_BASE}/BecknPageInfo/v1.0/context.jsonld",  # DemandFlexPerformance.pageInfo
}
SLOTS: Mapping[str, frozenset[str]] = {
    "resourceAttributes": frozenset({"DemandFlexNeed"}),
    "offerAttributes": frozenset({"DemandFlexBuyOffer"}),
    "contractAttributes": frozenset({"DEGContract"}),
    "commitmentAttributes": frozenset({"TimeSeries"}),
    "considerationAttributes": frozenset({"SettlementTerm", "RevenueFlow"}),
    "performanceAttributes": frozenset({"DemandFlexPerformance"}),
    "settlementAttributes": frozenset({"SettlementTerm"}),
}
#: schemaContext entries the devkits list for packs without a published context of their own
EXTRA_CONTEXTS = (f"{SCHEMA_BASE}/Quantity/context.jsonld",)
MAX_INTERVALS = 96
MAX_VALUES = 100


def context_of(pack: str) -> str:
    return CONTEXTS[pack]


def attrs(pack: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"@context", "@type", **body}` for one of our packs."""
    return {"@context": CONTEXTS[pack], "@type": pack, **body}


def schema_context(packs: Iterable[str]) -> tuple[str, ...]:
    """context.schemaContext for a message using `packs` (in the order given, once each)."""
    seen: list[str] = []
    for p in packs:
        uri = CONTEXTS[p]
        if uri not in seen:
            seen.append(uri)
    return tuple(seen)


def check_message(message: Mapping[str, Any], path: str = "message") -> None:
    """Refuse (V2Error 40007) any attribute pack we do not serve (module docstring)."""
    stack: list[tuple[Any, str]] = [(message, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                here = f"{where}.{key}"
                if isinstance(key, str) and key.endswith("Attributes") and child is not None:
                    _check_slot(key, child, here)
                stack.append((child, here))
        elif isinstance(node, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))


def _check_slot(slot: str, value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise V2Error("must be an attribute pack object with @context and @type", where)
    kind, ctx = value.get("@type"), value.get("@context")
    if not isinstance(kind, str) or not kind:
        raise V2Error("has no @type", f"{where}.@type")
    if not isinstance(ctx, str) or not ctx:
        raise V2Error("has no @context", f"{where}.@context")
    served = SLOTS.get(slot, frozenset())
    if kind not in served:
        offer = ", ".join(sorted(served)) or "none"
        raise V2Error(f"@type {kind[:60]!r} is not served in {slot} (served: {offer})", f"{where}.@type",
                      V2Code.PACK_NOT_SUPPORTED)
    if ctx != CONTEXTS[kind]:
        raise V2Error(f"@context {ctx[:100]!r} is not the {kind} pack served here ({CONTEXTS[kind]})",
                      f"{where}.@context", V2Code.PACK_NOT_SUPPORTED)


# ------------------------------------------------------------------------------------ time series


@dataclass(frozen=True)
class Series:
    """A read TimeSeries: start (unix s), interval length (s), and per interval the payload columns."""

    start: int
    interval_s: int
    units: Mapping[str, str]  # payloadType -> units
    intervals: tuple[Mapping[str, tuple[float, ...]], ...]

    def column(self, kind: str) -> list[tuple[float, ...]]:
        return [iv.get(kind, ()) for iv in self.intervals]


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise V2Error("must be a number", where)
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        raise V2Error("must be finite", where)
    return f


def read_series(value: Any, path: str) -> Series:
    """A TimeSeries or DemandFlexNeed body (V2Error 30000 naming the path when malformed)."""
    if not isinstance(value, dict):
        raise V2Error("must be an object", path)
    period = value.get("intervalPeriod")
    if not isinstance(period, dict):
        raise V2Error("is missing", f"{path}.intervalPeriod")
    try:
        start = parse_timestamp(str(period.get("start")))
    except ValueError as exc:
        raise V2Error(str(exc), f"{path}.intervalPeriod.start") from None
    try:
        duration = parse_duration(str(period.get("duration")))
        seconds = duration.add_to(start) - start
    except (ValueError, OverflowError) as exc:
        raise V2Error(str(exc), f"{path}.intervalPeriod.duration") from None
    if seconds.total_seconds() <= 0:
        raise V2Error("must be positive", f"{path}.intervalPeriod.duration")
    units: dict[str, str] = {}
    descriptors = value.get("payloadDescriptors")
    if not isinstance(descriptors, list) or len(descriptors) > 50:
        raise V2Error("must be an array of at most 50 descriptors", f"{path}.payloadDescriptors")
    for i, d in enumerate(descriptors):
        if not isinstance(d, dict) or not isinstance(d.get("payloadType"), str):
            raise V2Error("must name its payloadType", f"{path}.payloadDescriptors[{i}]")
        units[d["payloadType"]] = str(d.get("units", ""))
    raw = value.get("intervals")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_INTERVALS:
        raise V2Error(f"must hold 1 to {MAX_INTERVALS} intervals", f"{path}.intervals")
    intervals = []
    for i, iv in enumerate(raw):
        where = f"{path}.intervals[{i}]"
        if not isinstance(iv, dict):
            raise V2Error("must be an object", where)
        if iv.get("id") != i:
            raise V2Error(f"id must be {i} (intervals in order from 0)", f"{where}.id")
        cols: dict[str, tuple[float, ...]] = {}
        payloads = iv.get("payloads")
        if not isinstance(payloads, list) or len(payloads) > 50:
            raise V2Error("must be an array", f"{where}.payloads")
        for j, p in enumerate(payloads):
            pw = f"{where}.payloads[{j}]"
            if not isinstance(p, dict) or not isinstance(p.get("type"), str):
                raise V2Error("must name its type", pw)
            if p["type"] not in units:
                raise V2Error(f"payload type {p['type'][:40]!r} has no payloadDescriptor", f"{pw}.type")
            if p["type"] in cols:
                raise V2Error(f"payload type {p['type'][:40]!r} is given twice", f"{pw}.type")
            vals = p.get("values")
            if not isinstance(vals, list) or len(vals) > MAX_VALUES:
                raise V2Error(f"must be an array of at most {MAX_VALUES} numbers", f"{pw}.values")
            cols[p["type"]] = tuple(_number(v, f"{pw}.values[{k}]") for k, v in enumerate(vals))
        intervals.append(cols)
    return Series(int(start.timestamp()), int(seconds.total_seconds()), units, tuple(intervals))


def series_body(start: str, duration: str, descriptors: Sequence[tuple[str, str, str, str]],
                columns: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """A TimeSeries body; descriptors are (objectType, payloadType, units, insertedBy)."""
    return {
        "intervalPeriod": {"start": start, "duration": duration},
        "payloadDescriptors": [{"objectType": o, "payloadType": t, "units": u, "insertedBy": by}
                               for o, t, u, by in descriptors],
        "intervals": [{"id": i, "payloads": [{"type": t, "values": list(v)} for t, v in cols.items()]}
                      for i, cols in enumerate(columns)],
    }
