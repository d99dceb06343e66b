"""Beckn v2 catalog side: a derflex program as a Resource (DemandFlexNeed) plus an Offer
(DemandFlexBuyOffer), the catalog of all active programs (discover, catalog/publish), and finding
the program a contract names.

* Resource `program-{id}`: `resourceAttributes` DemandFlexNeed for the program's next window (the
  first window ending after now: stored, else from its rule): `intervalPeriod {start, duration}`
  (the program's interval, or the whole window), `CAPACITY_REQUESTED` (KW, inserted by the buyer)
  per interval from the program's request, and `PRICE` per interval for a fixed incentive.
* Offer `offer-program-{id}`: `offerAttributes` DemandFlexBuyOffer with the buyer's inputs
  (pay_as_clear: `clearingMethod "PAY-AS-CLEAR"`, `clearingTime` = the next window's publish time,
  `priceCap`; fixed: `incentivePerKwh`; both: `currency`, `baselineMethodology {bestOf, outOf}`,
  `penaltyRate` = under-delivery charge per kWh) and an empty seller role, plus a DEGContract
  template (`roles`, `policy`). `validity` runs until that window starts.
* The buyer's participantId is our bppId (the operator buys flexibility).

Refusals are V2Error with the v2 code: 30004 no such active program (resource), 30006 no such offer.

The catalog is built once and reused (`_Catalog`, as v1's server.services.bpp.catalog): per
database and provider, for as long as the "flex" change counter (programs, windows, grid nodes)
stays where it was and no program's next window (or a stored window read to find it) ends — a
discover then costs one counter read and the text filter. What depends on the moment of the
answer is filled in at answer time: an Offer's `validity.startDate` (now). A contract's view
(`entry`) reads the same cache for its program's Resource, buyer inputs and window.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from programs.model import Program
from programs.windows import Window
from server.beckn.timefmt import render_timestamp
from server.beckn_v2 import packs
from server.beckn_v2.errors import V2Code, V2Error
from server.db import changes
from server.db import flex as store
from server.db.models import ChangeCounter
from server.services.bpp.provider import Provider
from server.services.flex import stored

RESOURCE_PREFIX = "program-"
OFFER_PREFIX = "offer-program-"
POLICY_URL = "https://raw.githubusercontent.com/beckn/DEG/refs/heads/main/specification/policies/demand-flex-pac-contractpolicy.rego"
POLICY_QUERY = "data.deg.contracts.demand_flex_pac"
FIXED_POLICY_URL = "https://raw.githubusercontent.com/beckn/DEG/refs/heads/main/specification/policies/demand-flex-contractpolicy.rego"
FIXED_POLICY_QUERY = "data.deg.contracts.demand_flex"
CATALOG_PACKS = ("DemandFlexNeed", "DemandFlexBuyOffer", "DEGContract")


def _ts(seconds: float) -> str:
    return render_timestamp(datetime.fromtimestamp(seconds, timezone.utc))


def _iso_duration(seconds: int) -> str:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return "PT" + (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s or not (h or m) else "")


def next_window(session: Session, row: store.FlexProgram, program: Program, now: int) -> tuple[Window, int]:
    """The program's next window (ending after `now`) and its publish time."""
    win, publish_at, _ = _next_window(session, row, program, now)
    return win, publish_at


def _next_window(session: Session, row: store.FlexProgram, program: Program, now: int) -> tuple[Window, int, int]:
    """next_window, and the first second at which it could differ without any write (the chosen
    window, or a stored one read to find it, ends)."""
    stored_windows = store.windows(session, row.id, since_end=now, limit=5)
    ends = [int(w.end) for w in stored_windows if w.end > now]
    for w in stored_windows:
        if w.end > now and w.state != "cancelled":
            win = Window(datetime.fromtimestamp(w.start, timezone.utc), datetime.fromtimestamp(w.end, timezone.utc),
                         datetime.fromtimestamp(w.start, program.window.zone).date())
            return win, int(w.publish_at), min(ends)
    today = datetime.fromtimestamp(now, program.window.zone).date()
    for k in range(0, 15):
        win = program.window.window_on(today + timedelta(days=k))
        if win is not None and win.end.timestamp() > now:
            return win, int(win.start.timestamp()) - program.lead_time_s, min(ends + [int(win.end.timestamp())])
    raise V2Error("the program has no window in the next two weeks", None, V2Code.RESOURCE_NOT_FOUND)


def need_series(program: Program, window: Window) -> tuple[int, int, list[float]]:
    """(start, interval length, requested kW per interval) of a window."""
    reqs = program.requests(window)
    start = int(reqs[0].start.timestamp())
    step = int(program.interval_s or (reqs[0].end - reqs[0].start).total_seconds())
    return start, step, [float(r.requested_kw) for r in reqs]


def resource(session: Session, row: store.FlexProgram, program: Program, now: int) -> dict[str, Any]:
    window, _ = next_window(session, row, program, now)
    return _resource(row.id, program, window)


def _resource(program_id: int, program: Program, window: Window) -> dict[str, Any]:
    start, step, kws = need_series(program, window)
    descriptors = [("EVENT_PAYLOAD_DESCRIPTOR", "CAPACITY_REQUESTED", "KW", "buyer")]
    fixed = program.incentive.kind == "fixed" and program.incentive.rate_per_kwh is not None
    if fixed:
        descriptors.append(("EVENT_PAYLOAD_DESCRIPTOR", "PRICE", f"{program.currency}_PER_KWH", "buyer"))
    columns = [{"CAPACITY_REQUESTED": [kw], **({"PRICE": [float(program.incentive.rate_per_kwh or 0)]} if fixed else {})}
               for kw in kws]
    descriptor: dict[str, Any] = {"name": program.name}
    if program.description:
        descriptor["shortDesc"] = program.description[:200]
    return {"id": f"{RESOURCE_PREFIX}{program_id}", "descriptor": descriptor,
            "resourceAttributes": packs.attrs("DemandFlexNeed", packs.series_body(
                _ts(start), _iso_duration(step), descriptors, columns))}


def contract_template(program: Program, provider: Provider, seller: str | None = None) -> dict[str, Any]:
    fixed = program.incentive.kind == "fixed"
    return packs.attrs("DEGContract", {
        "roles": [{"role": "buyer", "participantId": provider.bpp_id}, {"role": "seller", "participantId": seller}],
        "policy": {"url": FIXED_POLICY_URL if fixed else POLICY_URL,
                   "queryPath": FIXED_POLICY_QUERY if fixed else POLICY_QUERY},
    })


def buyer_inputs(session: Session, row: store.FlexProgram, program: Program, now: int) -> dict[str, Any]:
    _, publish_at = next_window(session, row, program, now)
    return _buyer_inputs(program, publish_at)


def _buyer_inputs(program: Program, publish_at: int) -> dict[str, Any]:
    rule = program.measurement.baseline
    out: dict[str, Any] = {}
    if program.incentive.kind == "fixed" and program.incentive.rate_per_kwh is not None:
        out["incentivePerKwh"] = float(program.incentive.rate_per_kwh)
    else:
        out |= {"clearingMethod": "PAY-AS-CLEAR", "clearingTime": _ts(publish_at), "priceCap": program.price_cap}
    out |= {"currency": program.currency, "baselineMethodology": {"bestOf": rule.x, "outOf": rule.y},
            "penaltyRate": float(program.incentive.under_delivery_per_kwh)}
    return out


def offer(session: Session, row: store.FlexProgram, program: Program, provider: Provider, now: int, *,
          seller: dict[str, Any] | None = None, with_template: bool = True) -> dict[str, Any]:
    window, publish_at = next_window(session, row, program, now)
    return _offer(row.id, program, provider, now, window, _buyer_inputs(program, publish_at),
                  seller=seller, with_template=with_template)


def _offer(program_id: int, program: Program, provider: Provider, now: int, window: Window, inputs: dict[str, Any], *,
           seller: dict[str, Any] | None = None, with_template: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if with_template:
        body["contractAttributes"] = contract_template(program, provider)
    body["inputs"] = [{"role": "buyer", "participantId": provider.bpp_id, "inputs": inputs},
                      seller or {"role": "seller", "participantId": None}]
    fixed = program.incentive.kind == "fixed"
    return {"id": f"{OFFER_PREFIX}{program_id}",
            "descriptor": {"name": f"{program.name}: " + ("fixed incentive" if fixed else "pay-as-clear auction")},
            "resourceIds": [f"{RESOURCE_PREFIX}{program_id}"],
            "validity": {"startDate": _ts(now), "endDate": _ts(window.start.timestamp())},
            "offerAttributes": packs.attrs("DemandFlexBuyOffer", body)}


# ------------------------------------------------------------------------- the cached catalog

FLEX_FAMILY = "flex"  # the change counter of flex_programs, flex_windows and grid_nodes
_CATALOG_MAX_S = 300  # a bound for changes that bypass derflex (hand-made SQL), as v1's catalog


@dataclass(frozen=True)
class Entry:
    """An active program as the v2 catalog shows it, as of its next window. Shared by every answer
    while the catalog holds: read-only (copy before changing anything)."""

    program_id: int
    program: Program
    window: Window
    publish_at: int
    resource: dict[str, Any]
    buyer_inputs: dict[str, Any]
    offer: dict[str, Any]  # with the contract template; its validity.startDate is the build time

    def offer_at(self, now: int) -> dict[str, Any]:
        """The catalog's Offer as of `now` (validity starts now)."""
        return {**self.offer, "validity": {**self.offer["validity"], "startDate": _ts(now)}}


@dataclass(frozen=True)
class _Catalog:
    counter: int | None
    built: int
    until: int
    provider: Provider
    entries: tuple[Entry, ...]  # in store.programs order; programs without a window soon are left out


_catalogs: "weakref.WeakKeyDictionary[Any, _Catalog]" = weakref.WeakKeyDictionary()  # per engine
_catalogs_lock = threading.Lock()
_SEEN = "derflex.v2catalog"  # session.info: the catalog this transaction already checked


def _build_entry(session: Session, row: store.FlexProgram, program: Program, provider: Provider,
                 now: int) -> tuple[Entry, int]:
    window, publish_at, until = _next_window(session, row, program, now)
    inputs = _buyer_inputs(program, publish_at)
    return Entry(row.id, program, window, publish_at, _resource(row.id, program, window), inputs,
                 _offer(row.id, program, provider, now, window, inputs)), until


def _holds(c: _Catalog | None, provider: Provider, now: int) -> bool:
    return c is not None and c.built <= now < c.until and c.provider == provider


def _catalog(session: Session, provider: Provider, now: int) -> _Catalog:
    """The catalog as the programs stand (cached, see the module docstring). The counter is read
    once per transaction (the worker answers a batch of requests in one): later calls in it reuse
    what the first one found, unless the transaction itself changed programs since."""
    mine = FLEX_FAMILY in changes.pending(session)  # this transaction changed programs: build, keep nothing
    seen = None if mine else session.info.get(_SEEN)
    if _holds(seen, provider, now):
        return seen  # type: ignore[return-value]
    counter = session.scalar(sa.select(ChangeCounter.value).where(ChangeCounter.family == FLEX_FAMILY))
    engine = session.get_bind()
    cached = None if mine else _catalogs.get(engine)
    if _holds(cached, provider, now) and cached.counter == counter:  # type: ignore[union-attr]
        session.info[_SEEN] = cached
        return cached  # type: ignore[return-value]
    until = now + _CATALOG_MAX_S
    entries = []
    for row in store.programs(session, active_only=True):
        program = stored.program_of(row)
        try:
            entry, changes_at = _build_entry(session, row, program, provider, now)
        except V2Error:
            continue  # no window soon: nothing to offer now (the bound above looks again)
        until = min(until, changes_at)
        entries.append(entry)
    built = _Catalog(counter, now, until, provider, tuple(entries))
    if not mine:
        session.info[_SEEN] = built
        with _catalogs_lock:
            _catalogs[engine] = built
    return built


def entry(session: Session, program_id: int, provider: Provider, now: int) -> Entry:
    """A program as the catalog shows it now: the cached entry when the program is active and
    listed, else built from its row (a program no longer active still has contracts); V2Error
    (30004) when it has no window soon."""
    for e in _catalog(session, provider, now).entries:
        if e.program_id == program_id:
            return e
    row = session.get(store.FlexProgram, program_id)
    if row is None:
        raise V2Error(f"no program {program_id}", None, V2Code.RESOURCE_NOT_FOUND)
    return _build_entry(session, row, stored.program_of(row), provider, now)[0]


def contract_offer(listed: Entry, provider: Provider, seller: dict[str, Any]) -> dict[str, Any]:
    """A contract's Offer (no validity, no template): the buyer's inputs and the seller's."""
    offer = _offer(listed.program_id, listed.program, provider, 0, listed.window, listed.buyer_inputs, seller=seller,
                   with_template=False)
    offer.pop("validity")
    return offer


def catalog(session: Session, provider: Provider, now: int, *, text_search: str | None = None) -> dict[str, Any]:
    """One catalog: every active program (matching `text_search` in its name or description)."""
    resources, offers = [], []
    needle = text_search.casefold() if text_search else None
    for e in _catalog(session, provider, now).entries:
        if needle and needle not in f"{e.program.name} {e.program.description}".casefold():
            continue
        resources.append(e.resource)
        offers.append(e.offer_at(now))
    out: dict[str, Any] = {"id": f"catalog-{provider.bpp_id}", "descriptor": {"name": f"{provider.name} demand flexibility"},
                           "bppId": provider.bpp_id, "bppUri": provider.v2_uri,
                           "provider": {"id": provider.bpp_id, "descriptor": {"name": provider.name}}}
    if resources:
        out["resources"] = resources
    out["offers"] = offers  # core: anyOf resources or offers; an empty list keeps it valid
    return out


def program_of_resource(session: Session, resource_id: Any, path: str) -> tuple[store.FlexProgram, Program]:
    return _program(session, resource_id, RESOURCE_PREFIX, path, V2Code.RESOURCE_NOT_FOUND, "resource")


def program_of_offer(session: Session, offer_id: Any, path: str) -> tuple[store.FlexProgram, Program]:
    return _program(session, offer_id, OFFER_PREFIX, path, V2Code.OFFER_NOT_FOUND, "offer")


def _program(session: Session, ident: Any, prefix: str, path: str, code: V2Code, what: str) -> tuple[store.FlexProgram, Program]:
    if not isinstance(ident, str):
        raise V2Error("is missing" if ident is None else "must be a string", path)
    digits = ident.removeprefix(prefix)
    if not ident.startswith(prefix) or not digits.isdigit() or not digits.isascii() or len(digits) > 9:
        raise V2Error(f"no {what} {ident[:60]!r} here ({what}s are {prefix}{{id}})", path, code)
    row = session.get(store.FlexProgram, int(digits))
    if row is None or row.state != "active":
        raise V2Error(f"no {what} {ident[:60]!r}: no such active program", path, code)
    return row, stored.program_of(row)
