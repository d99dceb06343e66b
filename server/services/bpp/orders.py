"""The BPP's order side (docs/beckn.md "Orders are enrollments"): init, confirm, status, update,
cancel, track, support and rating, over the flexibility context's enrollment commands
(server.services.flex.commands: Enroll, ChangeEnrollmentState, ChangeOffer).

An order (`BecknOrder`) enrolls one customer's devices in one program; each device is a
fulfillment `type: "DER"` with a `der` tag group (lfdi, kind?, grid-node?, bid-curve?,
objectives?). Its enrollments are flex enrollments with source "beckn" and external_ref = the
order id. The stored `order` JSON is what was agreed: provider, items, billing {name, email,
phone}, the fulfillments as echoed (ids, type, tags), and later the cancellation and opt-outs.

Rules:

* Scope: an order is only ever looked up with the caller's bap_id in the SQL; another BAP's order
  id is 30010 "order not found", exactly like an id that does not exist.
* Fulfillment ids: the BAP's `id` when it gives one, else `der-{LFDI}`; ids and LFDIs are unique
  within an order. An unknown tag code in the `der` group is refused (a typo must not silently
  turn into a default curve). `bid-curve` and `objectives` are JSON texts (a JSON array/object is
  accepted as well); at most one of them. Reading a fulfillment makes its typed offer
  (server.services.flex.offers), so a malformed curve is refused at its tag.
* init: items[0] an active program (30004), billing.name required, every device's Enroll command
  checked NOW by enrollments.check_enroll, which reads and writes nothing: registered LFDI,
  eligible kind, grid node inside the program's area, curve/objective within its ratings, not
  enrolled in the program already. The order is the draft named by `order.id`, else the draft of
  this (bap_id, transaction_id) for that program, else a new one with a new id (uuid4 hex). on_init
  shows it with `type: "DRAFT"` and no status.
* confirm: the order named by `order.id`, else this transaction's draft (or, for a repeated
  confirm, its active order). Fulfillments/billing in the confirm replace the draft's. Every
  device's Enroll (source "beckn", external_ref = order id, state active: it joins the program's
  DERProgram) is checked first, then all are stored, and the order becomes active; when device k
  is refused nothing is stored. Confirming an active order answers it again and changes nothing.
* Fulfillment state (status and every order view): CANCELLED when the device's enrollment of
  this order is missing, cancelled or ended; EVENT-ACTIVE when one of its uncancelled events in
  the program's DERProgram is running now; EVENT-SCHEDULED when one is still to start (the stop
  gives the event's time range); otherwise ENROLLED. A draft's fulfillments have no state.
* update (active orders only, else 50002): `update_target` is `order.fulfillments` (replace the
  set: devices no longer listed leave, new ones enroll, changed curves are replaced, a changed
  kind or grid node re-enrolls the device) or `order.fulfillments.opt-out` (the listed
  fulfillment ids sit out the program's next published window: their uncancelled events in that
  window that have not ended are cancelled; no published window is 50002). The `order.` prefix
  may be left out; anything else is 30012.
* cancel: `cancellation_reason_id` must be one of the get_cancellation_reasons ids (30011);
  drafts and active orders can be cancelled (else 50001); every enrollment of the order is
  cancelled, which cancels its events that have not ended (never deleted).
* track: `{id, url: "{track_url}/{order id}", status: active|inactive}`; 40005 without a
  track_url. support: our contacts, and the order's tracking URL when `ref_id` is one of the
  caller's orders.
* rating: categories Order (an order id of the caller) and Fulfillment (a fulfillment id of one
  of the caller's orders), else 50003; an unknown id is 30014; the value (number or decimal
  string) must be within 0…5 (30015). Each rating is stored (BecknRating).

A device's refusal (a CommandError, which names its field) becomes: a field of the offer (the
curve's or objective's fault) → 30000 at the bid-curve or objectives tag; anything else — the LFDI
not registered, a kind not reported or not eligible, a grid node missing, unknown or outside the
area, already enrolled — → 30008 fulfillment unavailable at the fulfillment's path.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from programs import enrollment as lifecycle
from programs.kinds import DeviceKind
from programs.publishing import is_published
from server.beckn.errors import BecknError, ErrorCode
from server.beckn.orders import OrderState, beckn_status, transition
from server.db import derp as der_store
from server.db import flex as store
from server.db.beckn import BecknOrder, BecknRating
from server.db.models import Device
from server.services.flex import cancelling, enrollments, handlers, stored
from server.services.flex.command_errors import CommandError, InvalidCommand
from server.services.flex.commands import ChangeEnrollmentState, ChangeOffer, DeviceRef, Enroll
from server.services.flex.offers import Offer, objective_offer, power_offer
from server.beckn.values import arr, fail, json_text, number, obj, tag, tag_group, tag_values, text, ts
from server.services.bpp.catalog import (
    CANCELLATION_REASONS,
    RATING_CATEGORIES,
    active_program,
    check_provider,
    order_item,
    ordered_program,
    quote,
)
from server.services.bpp.provider import Provider
from server.services.bpp import settlement as beckn_settlement
from server.services.errors import Invalid, check_text

if TYPE_CHECKING:
    from server.beckn.envelope import Request

_LFDI = re.compile(r"[0-9A-Fa-f]{40}")
DER_TAGS = ("lfdi", "kind", "grid-node", "bid-curve", "objectives")
MAX_DEVICES = 1000
RATING_MAX = 5.0


# ---------------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class DeviceSpec:
    """One `DER` fulfillment of an order, read and normalised."""

    fid: str
    lfdi: str
    kind: DeviceKind | None
    grid_node: str | None
    offer: Offer | None
    offer_path: str | None  # where the curve or objective was given
    path: str  # the fulfillment
    wire: dict[str, Any]  # as echoed: {id, type, tags}

    def enroll(self, program_id: int, customer: str, order_id: str) -> Enroll:
        """The device's Enroll command for an order: active at once, source "beckn"."""
        return Enroll(program_id=program_id, device=DeviceRef(lfdi=self.lfdi), customer=customer, kind=self.kind,
                      grid_node=self.grid_node, offer=self.offer, state=lifecycle.State.ACTIVE, source="beckn",
                      external_ref=order_id)

    def refused(self, exc: CommandError) -> BecknError:
        """A refusal of this device's command as the Beckn error at its path (module docstring)."""
        if exc.field is not None and re.match(r"offer\b", exc.field) and self.offer_path is not None:
            return fail(f"device {self.lfdi}: {exc.message}", self.offer_path)
        if exc.kind == "not_found" and exc.field == "lfdi":  # the device itself (orders name it by LFDI)
            return fail(f"device {self.lfdi} is not registered here (IEEE 2030.5): register it first", self.path,
                        ErrorCode.FULFILLMENT_UNAVAILABLE)
        return fail(f"device {self.lfdi}: {exc.message}", self.path, ErrorCode.FULFILLMENT_UNAVAILABLE)


def _json_tag(value: Any, where: str, want: type) -> tuple[Any, str]:
    """(parsed value, its JSON text) of a bid-curve / objectives tag."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise fail("is not JSON text", where) from None
    else:
        parsed = value
    if not isinstance(parsed, want):
        raise fail(f"must be a JSON {'array' if want is list else 'object'}", where)
    try:
        return parsed, value if isinstance(value, str) else json_text(parsed)
    except ValueError:
        raise fail("holds a number that is not finite", where) from None


def parse_devices(value: Any, path: str) -> list[DeviceSpec]:
    """The devices of `order.fulfillments` (module docstring)."""
    items = arr(value, path, max_len=MAX_DEVICES)
    if not items:
        raise fail("must name at least one device", path)
    out: list[DeviceSpec] = []
    ids: set[str] = set()
    lfdis: set[str] = set()
    for i, f in enumerate(items):
        where = f"{path}[{i}]"
        f = obj(f, where)
        ftype = f.get("type")
        if ftype is not None and ftype != "DER":
            raise fail(f"type must be \"DER\", not {str(ftype)[:20]!r}", f"{where}.type")
        values: dict[str, tuple[Any, str]] = {}
        for group, code, v, tpath in tag_values(f.get("tags"), f"{where}.tags"):
            if group != "der":
                continue
            if code not in DER_TAGS:
                raise fail(f"unknown tag {str(code)[:40]!r} in the der group (known: {', '.join(DER_TAGS)})",
                           f"{tpath}.descriptor.code")
            if code in values:
                raise fail(f"tag {code} is given twice", tpath)
            values[code] = (v, f"{tpath}.value")
        if "lfdi" not in values:
            raise fail("has no der tag lfdi (the device's 40 hex digit LFDI)", f"{where}.tags")
        raw, vpath = values["lfdi"]
        if not isinstance(raw, str) or not _LFDI.fullmatch(raw):
            raise fail("must be the device's 40 hex digit LFDI", vpath)
        lfdi = raw.upper()
        if lfdi in lfdis:
            raise fail(f"device {lfdi} is listed twice", vpath)
        lfdis.add(lfdi)
        kind = None
        if "kind" in values:
            raw, vpath = values["kind"]
            try:
                kind = DeviceKind(raw)
            except ValueError:
                raise fail(f"must be one of {', '.join(k.value for k in DeviceKind)}", vpath) from None
        node = None
        if "grid-node" in values:
            node = text(values["grid-node"][0], values["grid-node"][1], max_len=64)
        if "bid-curve" in values and "objectives" in values:
            raise fail("give a bid-curve or objectives, not both", f"{where}.tags")
        offer, offer_path = None, None
        echoed: dict[str, str] = {"lfdi": lfdi}
        if kind is not None:
            echoed["kind"] = kind.value
        if node is not None:
            echoed["grid-node"] = node
        try:
            if "bid-curve" in values:
                (points, jtext), offer_path = _json_tag(*values["bid-curve"], list), values["bid-curve"][1]
                offer, echoed["bid-curve"] = power_offer(points, "bid-curve"), jtext
            if "objectives" in values:
                (objective, jtext), offer_path = _json_tag(*values["objectives"], dict), values["objectives"][1]
                offer, echoed["objectives"] = objective_offer(objective, "objectives"), jtext
        except InvalidCommand as exc:
            raise fail(f"device {lfdi}: {exc.message}", offer_path) from None
        fid = text(f.get("id"), f"{where}.id", required=False, max_len=64) or f"der-{lfdi}"
        if fid in ids:
            raise fail(f"fulfillment id {fid!r} is used twice", f"{where}.id")
        ids.add(fid)
        wire = {"id": fid, "type": "DER",
                "tags": [tag_group("der", [tag(k, v) for k, v in echoed.items()], "Device")]}
        out.append(DeviceSpec(fid, lfdi, kind, node, offer, offer_path, where, wire))
    return out


def stored_devices(data: dict[str, Any]) -> list[DeviceSpec]:
    return parse_devices(data.get("fulfillments"), "order.fulfillments")


def _checked(session: Session, spec: DeviceSpec, command: Enroll, now: int) -> enrollments.CheckedEnrollment:
    """Every check of one device's Enroll (nothing written), a refusal as the Beckn error at its path."""
    try:
        return enrollments.check_enroll(session, command, now)
    except CommandError as exc:
        raise spec.refused(exc) from None


def _execute(session: Session, spec: DeviceSpec, command: Enroll | ChangeOffer, now: int) -> None:
    """One device's command executed, a refusal as the Beckn error at its path."""
    try:
        handlers.execute(session, command, now)
    except CommandError as exc:
        raise spec.refused(exc) from None


def _cancel(session: Session, enr: store.Enrollment, now: int) -> None:
    """A device leaves the order's program: its enrollment is cancelled (with its events)."""
    handlers.execute(session, ChangeEnrollmentState(enr.program_id, enr.id, lifecycle.Event.CANCEL), now)


# ----------------------------------------------------------------------------------- orders


def _billing(value: Any, path: str) -> dict[str, Any]:
    b = obj(value, path)
    try:
        name = check_text(b.get("name"), "name", 100)
    except Invalid as exc:
        raise fail(exc.message, f"{path}.name") from None
    if not name or not name.strip():
        raise fail("is required (the customer who enrolls)", f"{path}.name")
    out: dict[str, Any] = {"name": name}
    email = text(b.get("email"), f"{path}.email", required=False)
    if email is not None:
        if "@" not in email:
            raise fail("is not an email address", f"{path}.email")
        out["email"] = email
    phone = text(b.get("phone"), f"{path}.phone", required=False, max_len=40)
    if phone is not None:
        out["phone"] = phone
    return out


def find_order(session: Session, bap_id: str, order_id: Any, path: str) -> BecknOrder:
    """The caller's order (30010 for an id of nobody's or of another BAP)."""
    oid = text(order_id, path, max_len=64)
    row = session.scalars(select(BecknOrder).where(BecknOrder.id == oid, BecknOrder.bap_id == bap_id)).first()
    if row is None or is_v2(row):  # a v2 contract is not a v1 order: the versions never mix
        raise fail(f"no order {oid!r}", path, ErrorCode.ORDER_NOT_FOUND)
    return row


def _order_of_transaction(session: Session, bap_id: str, transaction_id: str, states: tuple[str, ...],
                          program_id: int | None) -> BecknOrder | None:
    stmt = select(BecknOrder).where(BecknOrder.bap_id == bap_id, BecknOrder.transaction_id == transaction_id,
                                    BecknOrder.state.in_(states))
    if program_id is not None:
        stmt = stmt.where(BecknOrder.program_id == program_id)
    rows = session.scalars(stmt.order_by(BecknOrder.created_time.desc(), BecknOrder.id)).all()
    for state in states:  # in order of preference
        for r in rows:
            if r.state == state and not is_v2(r):
                return r
    return None


def is_v2(order: BecknOrder) -> bool:
    """A Beckn v2 contract (server.services.bpp.v2contracts stores them with this first key)."""
    return order.order.startswith('{"derflex-beckn-v2"')


def _touch(order: BecknOrder, request: Request, data: dict[str, Any], now: int) -> None:
    order.order = json.dumps(data)
    order.context = json.dumps(request.context.to_json())
    order.updated_time = now


def _enrollments(session: Session, order: BecknOrder) -> dict[str, store.Enrollment]:
    """The order's enrollments by device LFDI (external_ref = the order id)."""
    e = store.Enrollment
    rows = session.execute(
        select(e, Device.lfdi).join(Device, Device.id == e.device_id)
        .where(e.program_id == order.program_id, e.external_ref == order.id)
    ).all()
    return {lfdi.upper(): enr for enr, lfdi in rows}


def init(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    ctx = request.context
    order_in = obj(request.message.get("order"), "message.order")
    check_provider(order_in, "message.order", provider)
    row, program, capacity = ordered_program(session, order_in)
    billing = _billing(order_in.get("billing"), "message.order.billing")
    devices = parse_devices(order_in.get("fulfillments"), "message.order.fulfillments")
    if order_in.get("id") is not None:
        order = find_order(session, ctx.bap_id, order_in.get("id"), "message.order.id")
    else:
        order = _order_of_transaction(session, ctx.bap_id, ctx.transaction_id, ("draft",), row.id)
    transition(order.state if order is not None else None, "init")
    order_id = order.id if order is not None else uuid.uuid4().hex
    for spec in devices:  # checked now, stored at confirm
        _checked(session, spec, spec.enroll(row.id, billing["name"], order_id), now)
    data = {"provider": {"id": provider.bpp_id}, "items": [_item_json(row.id, capacity)], "billing": billing,
            "fulfillments": [d.wire for d in devices]}
    if order is None:
        order = BecknOrder(id=order_id, bap_id=ctx.bap_id, bap_uri=ctx.bap_uri, transaction_id=ctx.transaction_id,
                           program_id=row.id, state=OrderState.DRAFT.value, order="{}", context="{}",
                           created_time=now, updated_time=now)
        session.add(order)
    order.program_id = row.id
    order.bap_uri = ctx.bap_uri
    _touch(order, request, data, now)
    session.flush()
    return {"order": order_view(session, order, provider, now)}


def _item_json(program_id: int, capacity: float | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"program-{program_id}"}
    if capacity is not None:
        item["capacity_kw"] = capacity
    return item


def confirm(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    ctx = request.context
    order_in = obj(request.message.get("order"), "message.order")
    check_provider(order_in, "message.order", provider)
    program_id = None
    if order_in.get("items") is not None:
        program_id = ordered_program(session, order_in)[0].id
    if order_in.get("id") is not None:
        order = find_order(session, ctx.bap_id, order_in.get("id"), "message.order.id")
    else:
        found = _order_of_transaction(session, ctx.bap_id, ctx.transaction_id, ("draft", "active"), program_id)
        if found is None:
            raise fail("no order to confirm in this transaction (send init first)", "message.order",
                       ErrorCode.ORDER_NOT_FOUND)
        order = found
    if order.state == OrderState.ACTIVE.value:
        return {"order": order_view(session, order, provider, now)}  # a repeated confirm
    new_state = transition(order.state, "confirm")
    if program_id is not None and program_id != order.program_id:
        raise fail(f"the order is for program-{order.program_id}", "message.order.items[0].id")
    data = json.loads(order.order)
    if order_in.get("billing") is not None:
        data["billing"] = _billing(order_in.get("billing"), "message.order.billing")
    if order_in.get("fulfillments") is not None:
        devices = parse_devices(order_in.get("fulfillments"), "message.order.fulfillments")
        data["fulfillments"] = [d.wire for d in devices]
    else:
        devices = stored_devices(data)
    active_program(session, order.program_id, "message.order.items[0].id")
    checked = [_checked(session, spec, spec.enroll(order.program_id, data["billing"]["name"], order.id), now)
               for spec in devices]  # every device first: when one is refused nothing is stored
    for c in checked:
        enrollments.store_enrollment(session, c, now)
    order.state = new_state.value
    _touch(order, request, data, now)
    session.flush()
    return {"order": order_view(session, order, provider, now)}


def status(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    order = find_order(session, request.context.bap_id, request.message.get("order_id"), "message.order_id")
    return order_status_message(session, order, provider, now)


def order_status_message(session: Session, order: BecknOrder, provider: Provider, now: int) -> dict[str, Any]:
    return {"order": order_view(session, order, provider, now)}


def _device_states(session: Session, order: BecknOrder, der_program_id: int,
                   now: int) -> dict[str, tuple[str, int, tuple[int, int] | None]]:
    """LFDI -> (fulfillment state code, since when, (start, end) of the event it refers to or None).

    Since when: the event's start (EVENT-ACTIVE), its creation (EVENT-SCHEDULED), else the
    enrollment's last change."""
    by_lfdi = _enrollments(session, order)
    live = {e.device_id: lfdi for lfdi, e in by_lfdi.items() if not lifecycle.is_closed(e.state)}
    out: dict[str, tuple[str, int, tuple[int, int] | None]] = {
        lfdi: ("ENROLLED" if not lifecycle.is_closed(e.state) else "CANCELLED", e.updated_time, None)
        for lfdi, e in by_lfdi.items()}
    if live:
        ev = der_store.DerEvent
        rows = session.execute(
            select(ev.device_id, ev.start, ev.duration, ev.creation_time)
            .where(ev.program_id == der_program_id, ev.device_id.in_(list(live)), ev.cancelled_at.is_(None),
                   ev.start + ev.duration > now)
            .order_by(ev.start)
        ).all()
        for device_id, start, duration, created in rows:
            lfdi = live[device_id]
            current = out[lfdi][0]
            if start <= now and current != "EVENT-ACTIVE":
                out[lfdi] = ("EVENT-ACTIVE", start, (start, start + duration))
            elif start > now and current == "ENROLLED":
                out[lfdi] = ("EVENT-SCHEDULED", created, (start, start + duration))
    return out


def order_view(session: Session, order: BecknOrder, provider: Provider, now: int) -> dict[str, Any]:
    """The order as the BAP sees it (every on_init/on_confirm/on_status/on_update/on_cancel)."""
    data = json.loads(order.order)
    row = session.get(store.FlexProgram, order.program_id)
    assert row is not None  # RESTRICT: a program with orders is never deleted
    program = stored.program_of(row)
    capacity = (data.get("items") or [{}])[0].get("capacity_kw")
    draft = order.state == OrderState.DRAFT.value
    states = {} if draft else _device_states(session, order, row.der_program_id, now)
    fulfillments = []
    for f in data.get("fulfillments") or []:
        f = dict(f)
        if not draft:
            lfdi = next(t["value"] for t in f["tags"][0]["list"] if t["descriptor"]["code"] == "lfdi")
            code, since, span = states.get(lfdi, ("CANCELLED", order.updated_time, None))
            f["state"] = {"descriptor": {"code": code}, "updated_at": ts(since)}
            if span is not None:
                f["stops"] = [{"type": "EVENT", "time": {"range": {"start": ts(span[0]), "end": ts(span[1])}}}]
        fulfillments.append(f)
    out: dict[str, Any] = {"id": order.id}
    if draft:
        out["type"] = "DRAFT"
    else:
        out["status"] = beckn_status(order.state)
    out["provider"] = {"id": provider.bpp_id, "descriptor": {"name": provider.name}}
    out["items"] = [order_item(row, program, capacity)]
    out["billing"] = data["billing"]
    out["fulfillments"] = fulfillments
    out["quote"] = quote(f"program-{row.id}", program, capacity)
    out["payments"] = [{
        "collected_by": "BPP", "type": "POST-FULFILLMENT", "status": "NOT-PAID",
        "params": {"currency": program.currency},
        "tags": [tag_group("payout", [tag("payer", "BPP"), tag("payee", "customer"),
                                      tag("incentive", program.incentive.kind),
                                      tag("settled", "after each window's measurement and verification")],
                           "Payout terms")],
    }]
    out["cancellation_terms"] = [{
        "reason_required": True,
        "cancellation_fee": {"amount": {"currency": program.currency, "value": "0"}},
    }]
    if "cancellation" in data:
        out["cancellation"] = data["cancellation"]
    settled = None if draft else beckn_settlement.order_settlement(session, order, f"program-{row.id}")
    if settled is not None:  # the latest settled window replaces the expected pay
        out["quote"] = settled["quote"]
        out["payments"][0]["params"]["amount"] = settled["seller_amount"]
        out["tags"] = settled["tags"]
    out["created_at"] = ts(order.created_time)
    out["updated_at"] = ts(order.updated_time)
    return out


# ----------------------------------------------------------------------------------- update


def _target(value: Any) -> str:
    raw = text(value, "message.update_target", max_len=100)
    assert raw is not None
    target = raw.strip().removeprefix("order.")
    if target in ("fulfillments", "fulfillment"):
        return "fulfillments"
    if target in ("fulfillments.opt-out", "fulfillment.opt-out"):
        return "opt-out"
    raise fail(f"{raw[:60]!r} cannot be updated (order.fulfillments or order.fulfillments.opt-out)",
               "message.update_target", ErrorCode.INVALID_UPDATE_TARGET)


def update(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    msg = request.message
    target = _target(msg.get("update_target"))
    order_in = obj(msg.get("order"), "message.order")
    order = find_order(session, request.context.bap_id, order_in.get("id"), "message.order.id")
    transition(order.state, "update")
    row, _program = active_program(session, order.program_id, "message.order")
    data = json.loads(order.order)
    if target == "opt-out":
        _opt_out(session, order, row, data, order_in, now)
    else:
        _replace(session, order, data, order_in, now)
    _touch(order, request, data, now)
    session.flush()
    return {"order": order_view(session, order, provider, now)}


def _opt_out(session: Session, order: BecknOrder, row: store.FlexProgram, data: dict[str, Any],
             order_in: dict[str, Any], now: int) -> None:
    by_id = {d.fid: d for d in stored_devices(data)}
    wanted = []
    for i, f in enumerate(arr(order_in.get("fulfillments"), "message.order.fulfillments")):
        fid = text(obj(f, f"message.order.fulfillments[{i}]").get("id"), f"message.order.fulfillments[{i}].id")
        if fid not in by_id:
            raise fail(f"the order has no fulfillment {fid!r}", f"message.order.fulfillments[{i}].id")
        wanted.append(by_id[fid])
    if not wanted:
        raise fail("name the fulfillments that sit out the next window", "message.order.fulfillments")
    window = next((w for w in store.windows(session, row.id, since_end=now, limit=50) if is_published(w.state)), None)
    if window is None:
        raise fail("the program has no published window to opt out of (a window is published its lead "
                   "time before it starts)", "message.order.fulfillments", ErrorCode.UPDATION_NOT_POSSIBLE)
    by_lfdi = _enrollments(session, order)
    device_ids = [by_lfdi[d.lfdi].device_id for d in wanted
                  if d.lfdi in by_lfdi and not lifecycle.is_closed(by_lfdi[d.lfdi].state)]
    cancelling.cancel_devices_events(session, row, device_ids, now, window=window)
    data.setdefault("opt_outs", []).append({"window": window.window_key, "time": now,
                                            "fulfillment_ids": [d.fid for d in wanted]})


def _replace(session: Session, order: BecknOrder, data: dict[str, Any], order_in: dict[str, Any], now: int) -> None:
    devices = parse_devices(order_in.get("fulfillments"), "message.order.fulfillments")
    by_lfdi = _enrollments(session, order)
    customer = data["billing"]["name"]
    keep = {d.lfdi for d in devices}
    for lfdi, enr in by_lfdi.items():
        if lfdi not in keep and not lifecycle.is_closed(enr.state):
            _cancel(session, enr, now)
    for spec in devices:
        enr = by_lfdi.get(spec.lfdi)
        enroll = spec.enroll(order.program_id, customer, order.id)
        if enr is None or lifecycle.is_closed(enr.state):
            _execute(session, spec, enroll, now)
            continue
        node = session.get(store.GridNode, enr.grid_node_id) if enr.grid_node_id else None
        moved = (spec.kind is not None and spec.kind != enr.device_kind) or spec.grid_node != (node.name if node else None)
        if moved:  # kind or grid node changed: leave and enroll again
            _cancel(session, enr, now)
            _execute(session, spec, enroll, now)
        elif (json.loads(enr.offer) if enr.offer else None) != (spec.offer.json() if spec.offer else None):
            _execute(session, spec, ChangeOffer(order.program_id, enr.id, spec.offer), now)
    data["fulfillments"] = [d.wire for d in devices]


# ----------------------------------------------------------------------------------- cancel


def cancel(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    msg = request.message
    order = find_order(session, request.context.bap_id, msg.get("order_id"), "message.order_id")
    reason = msg.get("cancellation_reason_id")
    if isinstance(reason, int) and not isinstance(reason, bool):
        reason = str(reason)
    if reason not in CANCELLATION_REASONS:
        raise fail(f"{str(reason)[:20]!r} is not a cancellation reason (see get_cancellation_reasons: "
                   f"{', '.join(CANCELLATION_REASONS)})", "message.cancellation_reason_id",
                   ErrorCode.INVALID_CANCELLATION_REASON)
    new_state = transition(order.state, "cancel")
    for enr in _enrollments(session, order).values():
        if not lifecycle.is_closed(enr.state):
            _cancel(session, enr, now)
    data = json.loads(order.order)
    code, name = CANCELLATION_REASONS[reason]
    data["cancellation"] = {"time": ts(now), "cancelled_by": "CONSUMER",
                            "reason": {"id": reason, "descriptor": {"code": code, "name": name}}}
    order.state = new_state.value
    _touch(order, request, data, now)
    session.flush()
    return {"order": order_view(session, order, provider, now)}


# ------------------------------------------------------------------------ track, support, rating


def track(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    order = find_order(session, request.context.bap_id, request.message.get("order_id"), "message.order_id")
    if not provider.track_url:
        raise fail("this BPP offers no tracking URL", "message.order_id", ErrorCode.TRACKING_NOT_SUPPORTED)
    return {"tracking": {"id": order.id, "url": f"{provider.track_url.rstrip('/')}/{order.id}",
                         "status": "active" if order.state == OrderState.ACTIVE.value else "inactive"}}


def support(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    sup = obj(request.message.get("support"), "message.support", required=False)
    ref_id = text(sup.get("ref_id"), "message.support.ref_id", required=False)
    out: dict[str, Any] = {}
    if ref_id is not None:
        out["ref_id"] = ref_id
    out |= {"phone": provider.support_phone, "email": provider.support_email}
    if provider.track_url:
        mine = ref_id is not None and session.scalars(select(BecknOrder.id).where(
            BecknOrder.id == ref_id, BecknOrder.bap_id == request.context.bap_id)).first() is not None
        out["url"] = f"{provider.track_url.rstrip('/')}/{ref_id}" if mine else provider.track_url
    return {"support": out}


def _fulfillment_known(session: Session, bap_id: str, fid: str) -> bool:
    rows = session.scalars(select(BecknOrder.order).where(
        BecknOrder.bap_id == bap_id, BecknOrder.order.contains(json.dumps(fid), autoescape=True))).all()
    return any(f.get("id") == fid for r in rows for f in json.loads(r).get("fulfillments") or [])


def rating(session: Session, request: Request, provider: Provider, now: int) -> dict[str, Any]:
    bap_id = request.context.bap_id
    ratings = arr(request.message.get("ratings"), "message.ratings", max_len=100)
    if not ratings:
        raise fail("must hold at least one rating", "message.ratings")
    for i, r in enumerate(ratings):
        where = f"message.ratings[{i}]"
        r = obj(r, where)
        category = r.get("rating_category")
        if category not in RATING_CATEGORIES:
            raise fail(f"{str(category)[:30]!r} cannot be rated here (rated: {', '.join(RATING_CATEGORIES)})",
                       f"{where}.rating_category", ErrorCode.UNSUPPORTED_RATING_CATEGORY)
        ref_id = text(r.get("id"), f"{where}.id")
        assert ref_id is not None
        value = number(r.get("value"), f"{where}.value", code=ErrorCode.INVALID_RATING_VALUE)
        if not 0.0 <= value <= RATING_MAX:
            raise fail(f"{r.get('value')!r} is outside 0…{RATING_MAX:g}", f"{where}.value", ErrorCode.INVALID_RATING_VALUE)
        if category == "Order":
            known = session.scalars(select(BecknOrder.id).where(
                BecknOrder.id == ref_id, BecknOrder.bap_id == bap_id)).first() is not None
        else:
            known = _fulfillment_known(session, bap_id, ref_id)
        if not known:
            raise fail(f"no {category.lower()} {ref_id[:64]!r} to rate", f"{where}.id",
                       ErrorCode.ENTITY_TO_RATE_NOT_FOUND)
        session.add(BecknRating(bap_id=bap_id, ref_id=ref_id, category=category, value=value, created_time=now))
    session.flush()
    return {}
