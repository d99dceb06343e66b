"""Beckn v2 actions over the same domain as v1: a Contract is an order (`BecknOrder`), its
participating meters are flex enrollments made by the same typed commands
(server.services.flex.commands Enroll / ChangeEnrollmentState through enrollments and handlers),
and bid curves are cleared by programs.clearing. No HTTP, no signing: `handle` answers one
request with the `message` of its callback, or raises V2Error (nothing written: it runs in a
savepoint).

Mapping (docs/beckn.md, "Beckn v2.0.0"):

* A program is the Resource `program-{id}` (DemandFlexNeed) plus the Offer `offer-program-{id}`
  (DemandFlexBuyOffer), server.services.bpp.v2catalog. A contract names them in
  `commitments[0].resources[0].id` and `commitments[0].offer.id` (the offer must be the resource's).
  `resources[0].quantity.unitQuantity` (kW, optional) is the capacity asked: above 0 and at most the
  program's largest request (40002).
* Seller: the `seller` role of the offer's DemandFlexBuyOffer inputs: `participantId` (the customer;
  else the bapId) and `inputs.participatingMeters[]`, each a device's 40-hex LFDI or a DID whose
  last `:` segment is one (`did:web:meters.example:<LFDI>`).
* Bid curve: `commitments[0].commitmentAttributes` TimeSeries with OFFER_PRICE and
  CAPACITY_OFFERED per interval, one interval per interval of the program's next window. Each
  pair (OFFER_PRICE[k], CAPACITY_OFFERED[k]) is a block: CAPACITY_OFFERED[k] kW more at a clearing
  price of at least OFFER_PRICE[k]. A fixed-incentive program takes CAPACITY_OFFERED alone (the
  blocks are at the fixed rate). The bid becomes the meters' offers (`meter_offers`): each meter
  enrolls (Enroll) or is re-offered (ChangeOffer) with its share of every block, sized by what it
  can reduce (`headroom`), as one power curve per interval (flex.offers.interval_offer). The bid
  stands for every window of the program until an update replaces it. So the scheduler's clearing
  of the program, the DERControls it publishes and the settlement are the bid's. on_confirm (and
  an update's answer) adds CAPACITY_CLEARED (the contract's meters' setpoints summed) and
  CLEARING_PRICE (insertedBy buyer) beside the bid, from that same clearing of the next window
  with every device enrolled at that moment (`clear_contract`).
* select → DRAFT, nothing stored. init → every meter's Enroll checked (nothing written), the draft
  contract stored with a new uuid `contract.id`. confirm → the draft (by `contract.id`, else this
  transaction's) becomes ACTIVE: every Enroll checked, then all stored (source "beckn",
  external_ref = the contract id), the bid cleared; a repeated confirm answers the same.
  update (ACTIVE only, 50002) → the opt-in: the meters replace the contract's (new ones enroll,
  missing ones leave, staying ones get their new share by ChangeOffer) and a new bid replaces the
  old one. cancel → every enrollment cancelled,
  CANCELLED. status → the contract with its performance (per meter BASELINE/USAGE of the latest
  settled window) and settlement (DEGContract revenueFlows in our settlement's minor units, the
  buyer's flow making them sum to zero, plus a RevenueFlow consideration and a COMPLETE Settlement).
  track → our tracking URL; support → our contacts; rate → each rating stored (0…5).
* `context.try: true` on update, cancel, rate or support previews: the answer is computed and
  nothing is kept (the pipeline rolls the savepoint back).
* Contracts are the caller's: looked up with its bapId in SQL; another BAP's id is 30008 like an
  unknown one. A v1 order is not a v2 contract and the other way round.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from programs import enrollment as lifecycle
from programs.clearing import validate_curve
from programs.curves import DerRatings
from programs.kinds import DeviceKind
from programs.model import Program
from programs.settlement import ROLES, exponent
from server.beckn.orders import OrderError, OrderState, transition
from server.beckn_v2 import packs
from server.beckn_v2.contracts import commitment_code, commitment_status, contract_code, status as contract_status
from server.beckn_v2.envelope import Request
from server.beckn_v2.errors import V2Code, V2Error
from server.db import flex as store
from server.db.beckn import BecknOrder, BecknRating
from server.db.models import Device
from server.services.bpp import settlement as beckn_settlement
from server.services.bpp.orders import is_v2
from server.services.bpp import v2catalog
from server.services.bpp.provider import Provider
from server.services.flex import enrollments, handlers
from server.services.flex.command_errors import CommandError
from server.services.flex.commands import ChangeEnrollmentState, ChangeOffer, DeviceRef, Enroll
from server.services.flex.gathering import clear_fleet, gather, ratings_of, reported_kind
from server.services.flex.offers import Offer, interval_offer
from server.services.errors import ServiceError

V2_MARK = "derflex-beckn-v2"  # first key of a v2 contract's stored JSON (orders.is_v2)
MAX_METERS = 1000
_LFDI = re.compile(r"[0-9A-Fa-f]{40}")
RATING_MAX = 5.0




# ---------------------------------------------------------------------------------- reading


def _obj(value: Any, path: str, *, required: bool = True) -> dict[str, Any]:
    if value is None:
        if required:
            raise V2Error("is missing", path)
        return {}
    if not isinstance(value, dict):
        raise V2Error("must be an object", path)
    return value


def _arr(value: Any, path: str, *, required: bool = True, max_len: int = 1000) -> list[Any]:
    if value is None:
        if required:
            raise V2Error("is missing", path)
        return []
    if not isinstance(value, list):
        raise V2Error("must be an array", path)
    if len(value) > max_len:
        raise V2Error(f"has {len(value)} entries; at most {max_len} are accepted", path)
    return value


def _text(value: Any, path: str, *, required: bool = True, max_len: int = 255) -> str | None:
    if value is None:
        if required:
            raise V2Error("is missing", path)
        return None
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        raise V2Error(f"must be 1 to {max_len} printable characters", path)
    return value


@dataclass(frozen=True)
class Asked:
    """What a select/init/confirm/update contract asks for."""

    row: store.FlexProgram
    program: Program
    capacity_kw: float | None
    seller: str
    meters: tuple[tuple[str, str], ...]  # (as given, LFDI)
    meters_given: bool
    bid: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] | None  # per interval (prices, capacities)
    commitment_id: str | None
    kinds: tuple[tuple[str, str], ...] = ()  # (LFDI, DeviceKind value) declared by energyResources[].type

    def kind_of(self, lfdi: str) -> DeviceKind | None:
        return next((DeviceKind(k) for m, k in self.kinds if m == lfdi), None)


C = "message.contract"
CM = f"{C}.commitments[0]"


def read_contract(session: Session, message: dict[str, Any], request: Request, now: int) -> tuple[dict[str, Any], Asked]:
    contract = _obj(message.get("contract"), C)
    commitments = _arr(contract.get("commitments"), f"{C}.commitments", max_len=1)
    if len(commitments) != 1:
        raise V2Error("must hold exactly one commitment (one program per contract)", f"{C}.commitments")
    commitment = _obj(commitments[0], CM)
    resources = _arr(commitment.get("resources"), f"{CM}.resources", max_len=1)
    if len(resources) != 1:
        raise V2Error("must hold exactly one resource (the program's flex need)", f"{CM}.resources")
    res = _obj(resources[0], f"{CM}.resources[0]")
    row, program = v2catalog.program_of_resource(session, res.get("id"), f"{CM}.resources[0].id")
    offer = _obj(commitment.get("offer"), f"{CM}.offer")
    offer_row, _ = v2catalog.program_of_offer(session, offer.get("id"), f"{CM}.offer.id")
    if offer_row.id != row.id:
        raise V2Error(f"offer {offer.get('id')} is not an offer of resource {res.get('id')}", f"{CM}.offer.id",
                      V2Code.OFFER_NOT_FOUND)
    capacity = _capacity(res.get("quantity"), f"{CM}.resources[0].quantity", program)
    seller, meters, given, kinds = _seller(offer.get("offerAttributes"), f"{CM}.offer.offerAttributes", request)
    bid = None
    if commitment.get("commitmentAttributes") is not None:
        bid = _bid(session, commitment["commitmentAttributes"], f"{CM}.commitmentAttributes", row, program, now)
    cid = _text(commitment.get("id"), f"{CM}.id", required=False, max_len=100)
    return contract, Asked(row, program, capacity, seller, meters, given, bid, cid, kinds)


def _capacity(value: Any, path: str, program: Program) -> float | None:
    if value is None:
        return None
    q = _obj(value, path)
    unit = q.get("unitCode")
    if unit is not None and unit not in ("kW", "KW", "KWT"):
        raise V2Error(f"unitCode must be kW, not {str(unit)[:20]!r}", f"{path}.unitCode")
    kw = q.get("unitQuantity")
    if kw is None:
        return None
    if isinstance(kw, bool) or not isinstance(kw, (int, float)) or kw != kw:
        raise V2Error("must be a number of kW", f"{path}.unitQuantity")
    if kw <= 0:
        raise V2Error("must be above 0 kW", f"{path}.unitQuantity")
    req = program.requested_kw
    most = max(req) if isinstance(req, tuple) else float(req)
    if kw > most:
        raise V2Error(f"{kw:g} kW is more than this program asks for ({most:g} kW)", f"{path}.unitQuantity",
                      V2Code.QUANTITY_UNAVAILABLE)
    return float(kw)


#: DEG EnergyResource types (EnergyResource v2.0) -> the kind a meter's device is enrolled as.
ENERGY_RESOURCE_KINDS: dict[str, DeviceKind] = {
    "BESS": DeviceKind.BATTERY, "EV_CHARGER": DeviceKind.EV_CHARGER, "EV_V2G": DeviceKind.EV_CHARGER,
    "SOLAR_PV": DeviceKind.PV, "SMART_HVAC": DeviceKind.LOAD, "SMART_WATER_HEATER": DeviceKind.LOAD,
    "CONTROLLABLE_LOAD": DeviceKind.LOAD,
}


def _energy_resources(value: Any, path: str, meters: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The seller's `energyResources[]` (DEG: EnergyResource objects, each linked to a participating
    meter by `meterId`): the kind each declares by its `type`, for a device whose 2030.5 DERType
    does not say (a controllable load reports 0) — as a v1 order's device `kind`."""
    by_name = {given: lfdi for given, lfdi in meters} | {lfdi: lfdi for _, lfdi in meters}
    out: dict[str, str] = {}
    for k, er in enumerate(_arr(value, path, required=False, max_len=MAX_METERS)):
        where = f"{path}[{k}]"
        er = _obj(er, where)
        meter = _text(er.get("meterId"), f"{where}.meterId", max_len=300)
        lfdi = by_name.get(meter or "") or by_name.get((meter or "").rsplit(":", 1)[-1].upper())
        if lfdi is None:
            raise V2Error(f"meter {str(meter)[:80]!r} is not one of the participatingMeters", f"{where}.meterId")
        kind = ENERGY_RESOURCE_KINDS.get(str(er.get("type")))
        if kind is None:
            raise V2Error(f"type must be one of {', '.join(ENERGY_RESOURCE_KINDS)} (the kinds flexibility is "
                          f"asked of here), not {str(er.get('type'))[:40]!r}", f"{where}.type", V2Code.BUSINESS_ERROR)
        out[lfdi] = kind.value
    return tuple(out.items())


def _seller(value: Any, path: str, request: Request) -> tuple[str, tuple[tuple[str, str], ...], bool,
                                                              tuple[tuple[str, str], ...]]:
    attrs = _obj(value, path, required=False)
    inputs = _arr(attrs.get("inputs"), f"{path}.inputs", required=False, max_len=10)
    for i, entry in enumerate(inputs):
        entry = _obj(entry, f"{path}.inputs[{i}]")
        if entry.get("role") != "seller":
            continue
        who = _text(entry.get("participantId"), f"{path}.inputs[{i}].participantId", required=False, max_len=100)
        body = _obj(entry.get("inputs"), f"{path}.inputs[{i}].inputs", required=False)
        raw = body.get("participatingMeters")
        meters: list[tuple[str, str]] = []
        seen: set[str] = set()
        for k, m in enumerate(_arr(raw, f"{path}.inputs[{i}].inputs.participatingMeters", required=False,
                                   max_len=MAX_METERS)):
            where = f"{path}.inputs[{i}].inputs.participatingMeters[{k}]"
            text = _text(m, where, max_len=300)
            assert text is not None
            lfdi = text.rsplit(":", 1)[-1]
            if not _LFDI.fullmatch(lfdi):
                raise V2Error(f"meter {text[:80]!r} is not a device of this BPP: name it by its 40 hex digit LFDI "
                              "or a DID ending in :<LFDI>", where, V2Code.BUSINESS_ERROR)
            if lfdi.upper() in seen:
                raise V2Error(f"meter {text[:80]!r} is listed twice", where)
            seen.add(lfdi.upper())
            meters.append((text, lfdi.upper()))
        kinds = _energy_resources(body.get("energyResources"), f"{path}.inputs[{i}].inputs.energyResources", meters)
        return who or request.context.bap_id, tuple(meters), raw is not None, kinds
    return request.context.bap_id, (), False, ()


def _bid(session: Session, value: Any, path: str, row: store.FlexProgram, program: Program,
         now: int) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    series = packs.read_series(value, path)
    window, _ = v2catalog.next_window(session, row, program, now)
    _, _, need = v2catalog.need_series(program, window)
    if len(series.intervals) != len(need):
        raise V2Error(f"has {len(series.intervals)} intervals; the program's window has {len(need)}", f"{path}.intervals")
    fixed = program.incentive.kind == "fixed" and program.incentive.rate_per_kwh is not None
    out = []
    for i, cols in enumerate(series.intervals):
        where = f"{path}.intervals[{i}]"
        caps = cols.get("CAPACITY_OFFERED")
        if not caps:
            raise V2Error("has no CAPACITY_OFFERED", f"{where}.payloads")
        prices = cols.get("OFFER_PRICE")
        if prices is None:
            if not fixed:
                raise V2Error("has no OFFER_PRICE (a pay-as-clear bid prices every step)", f"{where}.payloads")
            prices = tuple(float(program.incentive.rate_per_kwh or 0.0) for _ in caps)
        if len(prices) != len(caps):
            raise V2Error("OFFER_PRICE and CAPACITY_OFFERED must have one value per step each", f"{where}.payloads")
        if any(c < 0 for c in caps) or any(p < 0 for p in prices):
            raise V2Error("prices and capacities must not be negative", f"{where}.payloads")
        try:
            validate_curve(block_curve(prices, caps))
        except ValueError as exc:
            raise V2Error(str(exc), f"{where}.payloads") from None
        out.append((tuple(prices), tuple(caps)))
    return tuple(out)


def block_curve(prices: tuple[float, ...] | list[float], caps: tuple[float, ...] | list[float]) -> list[tuple[float, float]]:
    """Blocks (price, kW) as a reduction curve with vertical steps (programs.clearing)."""
    merged: dict[float, float] = {}
    for p, c in zip(prices, caps):
        merged[float(p)] = merged.get(float(p), 0.0) + float(c)
    points: list[tuple[float, float]] = []
    total = 0.0
    for p in sorted(merged):
        points.append((p, total))
        total += merged[p]
        if merged[p] > 0:
            points.append((p, total))
    return points


# ----------------------------------------------------------------------------------- devices


def _enroll(asked: Asked, lfdi: str, order_id: str, offer: Offer | None) -> Enroll:
    """The meter's Enroll. v2 has no field of ours for a meter's grid node: under a program that
    covers exactly one grid node the meter is placed there (the only place it may be); a program
    covering several refuses it (grid_node is required), as a v1 order without one."""
    nodes = asked.program.grid_node_ids
    return Enroll(program_id=asked.row.id, device=DeviceRef(lfdi=lfdi), customer=asked.seller[:100],
                  kind=asked.kind_of(lfdi),
                  grid_node=nodes[0] if len(nodes) == 1 else None, offer=offer, state=lifecycle.State.ACTIVE,
                  source="beckn", external_ref=order_id)


def _meter_path(k: int) -> str:
    return f"{CM}.offer.offerAttributes.inputs.participatingMeters[{k}]"


def _command_error(exc: CommandError, given: str, where: str) -> V2Error:
    what = "is not registered here (IEEE 2030.5): register it first" \
        if exc.kind == "not_found" and exc.field == "lfdi" else f"cannot enroll: {exc.message}"
    return V2Error(f"meter {given[:80]} {what}", where, V2Code.BUSINESS_ERROR)


def _check(session: Session, asked: Asked, order_id: str, now: int, offers: dict[str, Offer | None], *,
           only: set[str] | None = None) -> list[enrollments.CheckedEnrollment]:
    """Every meter's Enroll (those in `only`, if given) checked, nothing written."""
    out = []
    for k, (given, lfdi) in enumerate(asked.meters):
        if only is not None and lfdi not in only:
            continue
        try:
            out.append(enrollments.check_enroll(session, _enroll(asked, lfdi, order_id, offers.get(lfdi)), now))
        except CommandError as exc:
            raise _command_error(exc, given, _meter_path(k)) from None
    return out


def _enrollments(session: Session, order: BecknOrder) -> dict[str, store.Enrollment]:
    e = store.Enrollment
    rows = session.execute(select(e, Device.lfdi).join(Device, Device.id == e.device_id)
                           .where(e.program_id == order.program_id, e.external_ref == order.id)).all()
    return {lfdi.upper(): enr for enr, lfdi in rows}


def _leave(session: Session, enr: store.Enrollment, now: int) -> None:
    handlers.execute(session, ChangeEnrollmentState(enr.program_id, enr.id, lifecycle.Event.CANCEL), now)


# ------------------------------------------------------------------------ the bid on devices


def _kw(watts: float | None) -> float | None:
    return None if watts is None else watts / 1000.0


def headroom(ratings: DerRatings) -> tuple[float | None, float, str]:
    """(kW a device can reduce net load by, its baseline power in kW, the rating that says so) for
    sizing its share of a contract's bid: a battery from idle (0 kW) up to its discharge limit; an
    EV charger or a load from consuming at its rating down to nothing (an EVSE charges at full
    rate by default, programs.curves); a PV inverter nothing (curtailing PV raises net load).
    None: the rating is not known."""
    r = ratings
    if r.kind == DeviceKind.BATTERY:
        limit, name = (r.max_discharge_w, "setMaxDischargeRateW") if r.max_discharge_w is not None else (r.max_w, "setMaxW")
        return _kw(limit), 0.0, name
    if r.kind == DeviceKind.EV_CHARGER:
        limit, name = (r.max_charge_w, "setMaxChargeRateW") if r.max_charge_w is not None else (r.max_w, "setMaxW")
        kw = _kw(limit)
        return kw, -(kw or 0.0), name
    if r.kind == DeviceKind.LOAD:
        kw = _kw(r.max_w)
        return kw, -(kw or 0.0), "setMaxW"
    return 0.0, 0.0, "kind"


def meter_offers(session: Session, asked: Asked) -> dict[str, Offer | None]:
    """Each meter's offer (by LFDI): its share of the contract's bid, one power curve per interval
    (server.services.flex.offers.interval_offer), so the program's own clearing — dispatch, the
    published DERControls, settlement — clears the bid. Meter i's share of every block is
    h_i / sum(h) of its kW (h = `headroom`), on top of its baseline: the meters' curves add up to
    the bid, and the clearing's pro-rata rule at a step gives each meter its share of what the
    contract clears. A bid above what the meters can reduce together is refused (40002). No bid:
    no offer (the default curve from each device's ratings)."""
    if asked.bid is None:
        return {lfdi: None for _, lfdi in asked.meters}
    sizes: list[tuple[str, float, float]] = []
    for k, (given, lfdi) in enumerate(asked.meters):
        device = session.scalars(select(Device).where(Device.lfdi == lfdi)).first()
        if device is None:
            raise V2Error(f"meter {given[:80]} is not registered here (IEEE 2030.5): register it first", _meter_path(k),
                          V2Code.BUSINESS_ERROR)
        kind = asked.kind_of(lfdi) or reported_kind(session, device.id)
        if kind is None:
            raise V2Error(f"meter {given[:80]} has not reported its DER type (DERCapability) and no energyResources "
                          "entry gives its type: its share of the bid cannot be sized", _meter_path(k),
                          V2Code.BUSINESS_ERROR)
        kw, baseline, rating = headroom(ratings_of(session, device.id, kind))
        if kw is None:
            raise V2Error(f"meter {given[:80]} has not reported {rating}: its share of the bid cannot be sized",
                          _meter_path(k), V2Code.BUSINESS_ERROR)
        sizes.append((lfdi, kw, baseline))
    total = sum(kw for _, kw, _ in sizes)
    for i, (_, caps) in enumerate(asked.bid):
        if sum(caps) > total + 1e-6:
            raise V2Error(f"offers {sum(caps):g} kW; the participating meters can reduce by {total:g} kW at most "
                          "(their ratings)", f"{CM}.commitmentAttributes.intervals[{i}]", V2Code.QUANTITY_UNAVAILABLE)
    out: dict[str, Offer | None] = {}
    for lfdi, kw, baseline in sizes:
        share = kw / total if total > 0 else 0.0
        curves = [[[p, round(baseline + share * q, 6)] for p, q in block_curve(prices, caps)] for prices, caps in asked.bid]
        try:
            out[lfdi] = interval_offer(curves)
        except CommandError as exc:  # cannot happen for a checked bid; named if it does
            raise V2Error(exc.message, f"{CM}.commitmentAttributes", V2Code.BUSINESS_ERROR) from None
    return out


def apply_offers(session: Session, order: BecknOrder, asked: Asked, offers: dict[str, Offer | None], now: int) -> None:
    """Every live enrollment of the contract that stays gets its new offer (ChangeOffer)."""
    where = {lfdi: k for k, (_, lfdi) in enumerate(asked.meters)}
    for lfdi, enr in _enrollments(session, order).items():
        if lifecycle.is_closed(enr.state) or lfdi not in offers:
            continue
        offer = offers[lfdi]
        if (json.loads(enr.offer) if enr.offer else None) == (offer.json() if offer else None):
            continue
        try:
            handlers.execute(session, ChangeOffer(enr.program_id, enr.id, offer), now)
        except CommandError as exc:
            raise _command_error(exc, asked.meters[where[lfdi]][0], _meter_path(where[lfdi])) from None


# ---------------------------------------------------------------------------------- clearing


def clear_contract(session: Session, order: BecknOrder, asked: Asked, now: int) -> list[tuple[float, float]] | None:
    """(cleared kW, clearing price) per interval of the program's next window, from the program's
    own clearing of every enrolled device (server.services.flex.gathering, what the scheduler
    publishes): this contract's meters' setpoints summed, at the price they see. None without a
    bid. Later enrollments or changed ratings re-clear when the window is published."""
    if asked.bid is None:
        return None
    window, _ = v2catalog.next_window(session, asked.row, asked.program, now)
    fleet = gather(session, asked.row, asked.program, (int(window.start.timestamp()), int(window.end.timestamp())), now)
    ours = {enr.device_id: lfdi for lfdi, enr in _enrollments(session, order).items() if enr.state == "active"}
    where = {lfdi: k for k, (_, lfdi) in enumerate(asked.meters)}
    for device_id, reason in fleet.skipped:
        if device_id in ours:
            k = where.get(ours[device_id], 0)
            raise V2Error(f"meter {asked.meters[k][0][:80]} cannot follow the bid: {reason}", _meter_path(k),
                          V2Code.BUSINESS_ERROR)
    rows = np.asarray([i for i, d in enumerate(fleet.device_ids) if d in ours], dtype=np.intp)
    out = []
    for k, req in enumerate(asked.program.requests(window)):
        result = clear_fleet(session, fleet, req.requested_kw, asked.program.price_cap, fleet.book(k))
        prices = np.asarray(result.device_prices, dtype=np.float64)[rows]
        price = float(prices[0]) if prices.size and np.all(prices == prices[0]) else float(result.price)
        kw = float(np.sum(np.asarray(result.setpoints, dtype=np.float64)[rows]))
        out.append((round(kw, 6), round(price, 6)))
    return out


# -------------------------------------------------------------------------------------- views


def _amount(minor: int, currency: str) -> float:
    return minor / 10 ** exponent(currency)


def contract_view(session: Session, order: BecknOrder | None, asked_or_data: Asked | dict[str, Any],
                  provider: Provider, now: int, *, state: str | None, page: int = 0) -> dict[str, Any]:
    """The Contract as the BAP sees it (every on_* answer); `page`: which page of the settled
    performance's meters (`performance_pages`)."""
    if isinstance(asked_or_data, Asked):
        a = asked_or_data
        data = {"program_id": a.row.id, "capacity_kw": a.capacity_kw, "seller": a.seller,
                "meters": [m[0] for m in a.meters],
                "bid": [list(map(list, b)) for b in a.bid] if a.bid is not None else None,
                "commitment_id": a.commitment_id}
    else:
        data = asked_or_data
    listed = v2catalog.entry(session, data["program_id"], provider, now)  # cached with the catalog
    program, program_id = listed.program, listed.program_id
    resource = dict(listed.resource)  # the cached one is shared: a copy to add the quantity to
    resource["quantity"] = {"unitCode": "kW", "unitQuantity": data.get("capacity_kw") or _largest(program),
                            "@type": "Quantity"}
    seller_inputs: dict[str, Any] = {}
    if data.get("meters"):
        seller_inputs["participatingMeters"] = list(data["meters"])
    seller = {"role": "seller", "participantId": data["seller"], "inputs": seller_inputs}
    offer = v2catalog.contract_offer(listed, provider, seller)
    commitment: dict[str, Any] = {
        "id": data.get("commitment_id") or f"commitment-{order.id if order else program_id}",
        "status": commitment_status(commitment_code(state)), "resources": [resource], "offer": offer}
    if data.get("bid"):
        commitment["commitmentAttributes"] = _bid_series(resource, data["bid"], data.get("clearing"), program)
    out: dict[str, Any] = {}
    if order is not None:
        out["id"] = order.id
    out["status"] = contract_status(contract_code(state))
    out["commitments"] = [commitment]
    currency = program.currency
    out["consideration"] = [{"id": f"consideration-{program_id}", "status": {"code": "DRAFT" if state != "active" else "ACTIVE"},
                             "considerationAttributes": packs.attrs("SettlementTerm", {
                                 "amount": {"currency": currency, "value": _expected(program, data)},
                                 "paymentTrigger": "ON_FULFILLMENT",
                                 "settlementStatus": "PENDING"})}]
    out["participants"] = [{"id": provider.bpp_id}, {"id": data["seller"]}]
    degc = v2catalog.contract_template(program, provider, data["seller"])
    if order is not None and state is not None and state != "draft":
        _performance(session, order, out, degc, currency, page, provider.v2_page_size)
    out["contractAttributes"] = degc
    return out


def _largest(program: Program) -> float:
    req = program.requested_kw
    return float(max(req)) if isinstance(req, tuple) else float(req)


def _expected(program: Program, data: dict[str, Any]) -> float:
    """Pay for one window at the capacity asked (the cleared capacity and price once cleared)."""
    hours = program.window.nominal_s / 3600.0
    clearing = data.get("clearing")
    if clearing:
        n = len(clearing)
        return round(sum(kw * price for kw, price in clearing) * hours / n, 2)
    fixed = program.incentive.kind == "fixed" and program.incentive.rate_per_kwh is not None
    rate = float(program.incentive.rate_per_kwh) if fixed else program.price_cap  # type: ignore[arg-type]
    return round((data.get("capacity_kw") or 1.0) * hours * rate, 2)


def _bid_series(resource: dict[str, Any], bid: list[Any], clearing: list[Any] | None, program: Program) -> dict[str, Any]:
    period = resource["resourceAttributes"]["intervalPeriod"]
    unit = f"{program.currency}_PER_KWH"
    descriptors = [("EVENT_PAYLOAD_DESCRIPTOR", "OFFER_PRICE", unit, "seller"),
                   ("EVENT_PAYLOAD_DESCRIPTOR", "CAPACITY_OFFERED", "KW", "seller")]
    if clearing:
        descriptors += [("EVENT_PAYLOAD_DESCRIPTOR", "CAPACITY_CLEARED", "KW", "buyer"),
                        ("EVENT_PAYLOAD_DESCRIPTOR", "CLEARING_PRICE", unit, "buyer")]
    columns = []
    for i, (prices, caps) in enumerate(bid):
        cols: dict[str, list[float]] = {"OFFER_PRICE": list(prices), "CAPACITY_OFFERED": list(caps)}
        if clearing:
            cols["CAPACITY_CLEARED"] = [clearing[i][0]]
            cols["CLEARING_PRICE"] = [clearing[i][1]]
        columns.append(cols)
    return packs.attrs("TimeSeries", packs.series_body(period["start"], period["duration"], descriptors, columns))


def performance_pages(session: Session, order: BecknOrder, page_size: int) -> int:
    """How many pages the settled performance's meters take (1 when nothing is settled)."""
    got = beckn_settlement.latest(session, order)
    n = sum(1 for r in got["rows"] if json.loads(r.detail)["intervals"]) if got else 0
    return max(1, -(-n // max(1, page_size)))


def page_of(cursor: str | None, path: str = "context.tags") -> int:
    """The page a status pull asks for (pageCursor "p{n}", as our pageInfo.nextCursor says)."""
    if cursor is None:
        return 0
    digits = cursor.removeprefix("p")
    if not cursor.startswith("p") or not digits.isdigit() or len(digits) > 6:
        raise V2Error(f"pageCursor {cursor[:40]!r} is not one of ours (p0, p1, …)", path)
    return int(digits)


def _performance(session: Session, order: BecknOrder, out: dict[str, Any], degc: dict[str, Any], currency: str,
                 page: int = 0, page_size: int = 1000) -> None:
    """performance[] (per meter BASELINE/USAGE of the latest settled window), settlements[] and the
    revenue flows of our settlement, when the contract has a settled window. More meters than
    `page_size`: page `page` of them, with its BecknPageInfo (sequence, total, isLast, cursor
    "p{n}", nextCursor)."""
    got = beckn_settlement.latest(session, order)
    if got is None:
        return
    run, window, rows = got["run"], got["window"], got["rows"]
    by_device = {enr.device_id: lfdi for lfdi, enr in _enrollments(session, order).items()}
    meters = []
    by_role = dict.fromkeys(ROLES, 0)
    for r in rows:
        detail = json.loads(r.detail)
        for f in detail["flows"]:
            by_role[f["role"]] += f["amount_minor"]
        ivs = detail["intervals"]
        if not ivs:
            continue
        meters.append({"meterId": by_device.get(r.device_id, str(r.device_id)), "telemetry": {
            "@type": "TimeSeries",
            **packs.series_body(ivs[0]["start"], v2catalog._iso_duration(run.interval_s),
                                [("REPORT_PAYLOAD_DESCRIPTOR", "BASELINE", "KW", "buyer"),
                                 ("REPORT_PAYLOAD_DESCRIPTOR", "USAGE", "KW", "buyer")],
                                [{"BASELINE": [iv["baseline_kw"] or 0.0], "USAGE": [iv["actual_kw"] or 0.0]} for iv in ivs])}})
    event = f"{window.program_id}-{window.window_key}"
    perf_id = f"perf-{order.id}-{window.window_key}"
    body: dict[str, Any] = {"eventId": event, "methodology": "derflex-settlement", "meters": meters}
    name = f"settled, version {run.version}"
    size = max(1, page_size)
    if len(meters) > size:
        pages = -(-len(meters) // size)
        if page >= pages:
            raise V2Error(f"pageCursor p{page} is beyond the last page (p{pages - 1})", "context.tags")
        last = page == pages - 1
        body["meters"] = meters[page * size:(page + 1) * size]
        body["pageInfo"] = {"@type": "PageInfo", "sequence": page, "pageSize": size, "total": len(meters),
                            "isLast": last, "cursor": f"p{page}", "nextCursor": None if last else f"p{page + 1}",
                            "collectionId": perf_id}
        name += f", meters page {page + 1} of {pages}"
    perf: dict[str, Any] = {"id": perf_id, "status": {"code": "SETTLED", "name": name},
                            "commitmentIds": [out["commitments"][0]["id"]],
                            "performanceAttributes": packs.attrs("DemandFlexPerformance", body)}
    out["performance"] = [perf]
    seller_minor = sum(by_role.values())
    flows = [{"role": role.lower(), "value": _amount(m, currency), "currency": run.currency,
              "description": f"{role} share of window {window.window_key}"} for role, m in by_role.items() if m]
    flows.append({"role": "buyer", "value": _amount(-seller_minor, currency), "currency": run.currency,
                  "description": f"paid by {out['participants'][0]['id']} for window {window.window_key}"})
    degc["revenueFlows"] = flows
    cid = f"revenue-{order.id}-{window.window_key}"
    out["consideration"].append({"id": cid, "status": {"code": "COMPLETE"},
                                 "considerationAttributes": packs.attrs("RevenueFlow", {"revenueFlows": flows})})
    out["settlements"] = [{"id": f"settlement-{window.program_id}-{window.window_key}-v{run.version}",
                           "considerationId": cid, "status": "COMPLETE"}]


def used_packs(message: dict[str, Any]) -> tuple[str, ...]:
    """context.schemaContext of a message we send: every pack it uses."""
    found: list[str] = []
    stack: list[Any] = [message]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("@type")
            if isinstance(kind, str) and kind in packs.CONTEXTS and kind not in found:
                found.append(kind)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    order = [p for p in packs.CONTEXTS if p in found]
    return packs.schema_context(order) + (packs.EXTRA_CONTEXTS if '"Quantity"' in json.dumps(message) else ())


# ------------------------------------------------------------------------------------ actions


def _find(session: Session, bap_id: str, contract_id: Any, path: str) -> BecknOrder:
    cid = _text(contract_id, path, max_len=64)
    row = session.get(BecknOrder, cid)  # a batch asking after one contract loads it once
    if row is None or row.bap_id != bap_id or not is_v2(row):
        raise V2Error(f"no contract {cid!r}", path, V2Code.CONTRACT_NOT_FOUND)
    return row


def _data(order: BecknOrder) -> dict[str, Any]:
    return json.loads(order.order)[V2_MARK]


def _store(order: BecknOrder, request: Request, data: dict[str, Any], now: int) -> None:
    order.order = json.dumps({V2_MARK: data})
    order.context = json.dumps(request.context.to_json())
    order.updated_time = now


def select_(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    _, asked = read_contract(session, request.message, request, now)
    return {"contract": contract_view(session, None, asked, provider, now, state=None)}


def _transaction_draft(session: Session, request: Request, program_id: int, states: tuple[str, ...]) -> BecknOrder | None:
    c = request.context
    rows = session.scalars(select(BecknOrder).where(
        BecknOrder.bap_id == c.bap_id, BecknOrder.transaction_id == c.transaction_id, BecknOrder.program_id == program_id,
        BecknOrder.state.in_(states)).order_by(BecknOrder.created_time.desc())).all()
    return next((r for s in states for r in rows if r.state == s and is_v2(r)), None)


def _state_error(exc: OrderError, code: V2Code) -> V2Error:
    return V2Error(exc.message.replace("order", "contract"), C, code)


def init(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    contract, asked = read_contract(session, request.message, request, now)
    if contract.get("id") is not None:
        order: BecknOrder | None = _find(session, request.context.bap_id, contract.get("id"), f"{C}.id")
    else:
        order = _transaction_draft(session, request, asked.row.id, ("draft",))
    try:
        transition(order.state if order is not None else None, "init")
    except OrderError as exc:
        raise _state_error(exc, V2Code.BUSINESS_ERROR) from None
    order_id = order.id if order is not None else str(uuid.uuid4())
    _check(session, asked, order_id, now, meter_offers(session, asked))
    if order is None:
        c = request.context
        order = BecknOrder(id=order_id, bap_id=c.bap_id, bap_uri=c.bap_uri, transaction_id=c.transaction_id,
                           program_id=asked.row.id, state=OrderState.DRAFT.value, order="{}", context="{}",
                           created_time=now, updated_time=now)
        session.add(order)
    elif order.program_id != asked.row.id:
        raise V2Error(f"contract {order.id} is for resource program-{order.program_id}", f"{CM}.resources[0].id")
    data = _data_of(asked)
    _store(order, request, data, now)
    session.flush()
    return {"contract": contract_view(session, order, data, provider, now, state="draft")}


def _data_of(asked: Asked) -> dict[str, Any]:
    return {"program_id": asked.row.id, "capacity_kw": asked.capacity_kw, "seller": asked.seller,
            "meters": [m[0] for m in asked.meters], "lfdis": [m[1] for m in asked.meters],
            "bid": [list(map(list, b)) for b in asked.bid] if asked.bid is not None else None,
            "commitment_id": asked.commitment_id, "kinds": [list(k) for k in asked.kinds]}


def _kinds(data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(m), str(k)) for m, k in data.get("kinds") or ())


def confirm(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    contract, asked = read_contract(session, request.message, request, now)
    if contract.get("id") is not None:
        order = _find(session, request.context.bap_id, contract.get("id"), f"{C}.id")
    else:
        found = _transaction_draft(session, request, asked.row.id, ("draft", "active"))
        if found is None:
            raise V2Error("no draft contract in this transaction: send init first", f"{C}.id", V2Code.CONTRACT_NOT_FOUND)
        order = found
    if order.state == OrderState.ACTIVE.value:  # a repeated confirm
        return {"contract": contract_view(session, order, _data(order), provider, now, state=order.state)}
    try:
        new_state = transition(order.state, "confirm")
    except OrderError as exc:
        raise _state_error(exc, V2Code.BUSINESS_ERROR) from None
    if order.program_id != asked.row.id:
        raise V2Error(f"contract {order.id} is for resource program-{order.program_id}", f"{CM}.resources[0].id")
    previous = _data(order)
    if not asked.meters_given:  # the meters named at init
        asked = Asked(asked.row, asked.program, asked.capacity_kw, asked.seller,
                      tuple(zip(previous.get("meters", []), previous.get("lfdis", []))), True, asked.bid, asked.commitment_id,
                      _kinds(previous))
    if not asked.meters:
        raise V2Error("name at least one participating meter (at init or confirm)",
                      f"{CM}.offer.offerAttributes.inputs", V2Code.BUSINESS_ERROR)
    if asked.bid is None and previous.get("bid"):
        asked = Asked(asked.row, asked.program, asked.capacity_kw, asked.seller, asked.meters, True,
                      tuple((tuple(p), tuple(c)) for p, c in previous["bid"]), asked.commitment_id, asked.kinds)
    if asked.bid is None and asked.program.incentive.kind != "fixed":
        raise V2Error("a pay-as-clear offer needs a bid curve (TimeSeries OFFER_PRICE/CAPACITY_OFFERED)",
                      f"{CM}.commitmentAttributes")
    for checked in _check(session, asked, order.id, now, meter_offers(session, asked)):
        enrollments.store_enrollment(session, checked, now)
    data = _data_of(asked)
    data["clearing"] = clear_contract(session, order, asked, now)
    order.state = new_state.value
    _store(order, request, data, now)
    session.flush()
    return {"contract": contract_view(session, order, data, provider, now, state=order.state)}


def status(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    contract = _obj(request.message.get("contract"), C)
    order = _find(session, request.context.bap_id, contract.get("id"), f"{C}.id")
    return status_message(session, order, provider, now, page=page_of(request.context.page_cursor))


def status_message(session: Session, order: BecknOrder, provider: Provider, now: int, *, page: int = 0) -> dict[str, Any]:
    """The contract as on_status shows it: page `page` of its settled performance (a status pull
    names the page by context.tags pagination/pageCursor; a push sends every page in turn)."""
    return {"contract": contract_view(session, order, _data(order), provider, now, state=order.state, page=page)}


def update(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    contract = _obj(request.message.get("contract"), C)
    order = _find(session, request.context.bap_id, contract.get("id"), f"{C}.id")
    try:
        transition(order.state, "update")
    except OrderError as exc:
        raise _state_error(exc, V2Code.UPDATE_NOT_POSSIBLE) from None
    _, asked = read_contract(session, request.message, request, now)
    if asked.row.id != order.program_id:
        raise V2Error(f"contract {order.id} is for resource program-{order.program_id}", f"{CM}.resources[0].id")
    previous = _data(order)
    if asked.meters_given and not asked.meters:
        raise V2Error("an opt-in names at least one meter (cancel the contract to leave)",
                      f"{CM}.offer.offerAttributes.inputs", V2Code.UPDATE_NOT_POSSIBLE)
    meters = asked.meters if asked.meters_given else tuple(zip(previous.get("meters", []), previous.get("lfdis", [])))
    bid = asked.bid if asked.bid is not None else (
        tuple((tuple(p), tuple(c)) for p, c in previous["bid"]) if previous.get("bid") else None)
    kinds = asked.kinds if asked.meters_given else _kinds(previous)
    asked = Asked(asked.row, asked.program, asked.capacity_kw, asked.seller, meters, True, bid, asked.commitment_id, kinds)
    offers = meter_offers(session, asked)
    current = _enrollments(session, order)
    keep = {lfdi for _, lfdi in asked.meters}
    for lfdi, enr in current.items():
        if lfdi not in keep and not lifecycle.is_closed(enr.state):
            _leave(session, enr, now)
    apply_offers(session, order, asked, offers, now)  # the meters that stay: their share of the new bid
    joining = {lfdi for lfdi in keep if lfdi not in current or lifecycle.is_closed(current[lfdi].state)}
    for checked in _check(session, asked, order.id, now, offers, only=joining):
        enrollments.store_enrollment(session, checked, now)
    data = _data_of(asked)
    data["clearing"] = clear_contract(session, order, asked, now)
    _store(order, request, data, now)
    session.flush()
    return {"contract": contract_view(session, order, data, provider, now, state=order.state)}


def cancel(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    contract = _obj(request.message.get("contract"), C)
    order = _find(session, request.context.bap_id, contract.get("id"), f"{C}.id")
    try:
        new_state = transition(order.state, "cancel")
    except OrderError as exc:
        raise _state_error(exc, V2Code.CANCELLATION_NOT_POSSIBLE) from None
    for enr in _enrollments(session, order).values():
        if not lifecycle.is_closed(enr.state):
            _leave(session, enr, now)
    order.state = new_state.value
    data = _data(order)
    data["cancelled_at"] = now
    _store(order, request, data, now)
    session.flush()
    return {"contract": contract_view(session, order, data, provider, now, state=order.state)}


def track(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    tracking = _obj(request.message.get("tracking"), "message.tracking")
    contract = _obj(tracking.get("contract"), "message.tracking.contract")
    order = _find(session, request.context.bap_id, contract.get("id"), "message.tracking.contract.id")
    if not provider.track_url:
        raise V2Error("this BPP offers no tracking URL", "message.tracking", V2Code.TRACKING_NOT_SUPPORTED)
    return {"tracking": {"url": f"{provider.track_url.rstrip('/')}/{order.id}",
                         "status": "ACTIVE" if order.state == OrderState.ACTIVE.value else "INACTIVE"}}


def support(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    sup = _obj(request.message.get("support"), "message.support")
    ref = _text(sup.get("orderId"), "message.support.orderId", required=False, max_len=64)
    out: dict[str, Any] = {}
    if ref is not None:
        _find(session, request.context.bap_id, ref, "message.support.orderId")
        out["orderId"] = ref
    out["descriptor"] = {"name": f"{provider.name} support",
                         "longDesc": f"email {provider.support_email}, phone {provider.support_phone}"}
    return {"support": out}


def rate(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    bap_id = request.context.bap_id
    inputs = _arr(request.message.get("ratingInputs"), "message.ratingInputs", max_len=100)
    if not inputs:
        raise V2Error("must hold at least one rating", "message.ratingInputs")
    for i, r in enumerate(inputs):
        where = f"message.ratingInputs[{i}]"
        r = _obj(r, where)
        target = _obj(r.get("target"), f"{where}.target")
        ref = _text(target.get("id"), f"{where}.target.id", max_len=64)
        assert ref is not None
        _find(session, bap_id, ref, f"{where}.target.id")
        value = _obj(r.get("range"), f"{where}.range").get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= RATING_MAX:
            raise V2Error(f"range.value must be a number within 0…{RATING_MAX:g}", f"{where}.range.value",
                          V2Code.INVALID_RATING_VALUE)
        session.add(BecknRating(bap_id=bap_id, ref_id=ref, category="Contract", value=float(value), created_time=now))
    session.flush()
    return {"ratings": inputs}


def discover(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    msg = request.message
    intent = _obj(msg.get("intent"), "message.intent", required=False)
    needle = intent.get("textSearch", msg.get("textSearch"))
    needle = _text(needle, "message.intent.textSearch", required=False, max_len=200)
    return {"catalogs": [v2catalog.catalog(session, provider, now, text_search=needle)]}


def agreements(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every BAP's orders (v1.1.0) and contracts (v2.0.0), newest first, as `derflex beckn orders`
    shows them: id, version, BAP, transaction, program, state, meters and (v2) the cleared bid."""
    e = store.Enrollment
    out = []
    for order in session.scalars(select(BecknOrder).order_by(BecknOrder.updated_time.desc(), BecknOrder.id).limit(limit)):
        live = session.scalars(select(e.state).where(e.program_id == order.program_id, e.external_ref == order.id)).all()
        row: dict[str, Any] = {"id": order.id, "version": "2.0.0" if is_v2(order) else "1.1.0", "bap": order.bap_id,
                               "transaction": order.transaction_id, "program": order.program_id, "state": order.state,
                               "meters": sum(1 for s in live if not lifecycle.is_closed(s)), "updated": order.updated_time}
        if is_v2(order):
            data = _data(order)
            row["cleared"] = [{"kw": kw, "price": price} for kw, price in (data.get("clearing") or [])]
        out.append(row)
    return out


HANDLERS = {"discover": discover, "select": select_, "init": init, "confirm": confirm, "status": status,
            "update": update, "cancel": cancel, "track": track, "support": support, "rate": rate}


#: actions that write nothing: run without a savepoint (two statements and a flush each), as v1's
#: catalog actions, and without autoflush: in the worker's batch their first query flushed the
#: previous requests' outbox rows and states one at a time, where the commit writes them together
#: (they read none of what is left pending: orders, programs, windows, settlements, which a writing
#: action flushes before it returns)
WITHOUT_WRITES = frozenset({"discover", "status", "track", "support"})


def handle(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    """The callback's `message`, in the caller's transaction (a savepoint: a V2Error writes nothing,
    and a `try: true` preview is rolled back after its answer is made; none for WITHOUT_WRITES)."""
    handler = HANDLERS[request.context.action]
    if request.context.action in WITHOUT_WRITES:
        try:
            with session.no_autoflush:
                return handler(session, request, provider, now)
        except (CommandError, ServiceError) as exc:
            raise V2Error(exc.message, None, V2Code.BUSINESS_ERROR) from None
    savepoint = session.begin_nested()
    try:
        out = handler(session, request, provider, now)
        session.flush()
    except BaseException as exc:
        if savepoint.is_active:
            savepoint.rollback()
        if isinstance(exc, (CommandError, ServiceError)):
            raise V2Error(exc.message, None, V2Code.BUSINESS_ERROR) from None
        raise
    if request.context.preview:
        savepoint.rollback()
    else:
        savepoint.commit()
    return out
