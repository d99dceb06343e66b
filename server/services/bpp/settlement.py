"""What a Beckn order shows of its settlement: the settled quote, revenue flows and the report.

An order's devices are settled per window (server.services.flex.settlement). Once a window that
included them is settled, the order (every on_status, pushed or asked for) shows the LATEST settled
window:

* `quote`: price = what the order's devices earned in total (all parties, the sum of the flows),
  one breakup entry per revenue-flow role (prosumer, grid operator, aggregator, tax) in the
  program's currency, as decimals in major units;
* `payments[0].params.amount`: the prosumer's share (what the BPP pays the customer);
* `tags`: a "settlement" group (window, version, reason, kWh requested/cleared/delivered/credited
  for the order's devices, the report id) and a "revenue-flows" group whose value is the seed's
  revenueFlows array as JSON text (party {era, role}, amount, currency, description), since
  v1.1.0 has no typed slot for it.

Amounts come from the stored integer minor units and are summed per role over the order's
devices: the breakup adds up exactly to the price.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from programs.settlement import ROLES, exponent
from server.db import flex as store
from server.db import settlement as records
from server.db.beckn import BecknOrder
from server.beckn.values import dec, tag, tag_group

_TITLES = {"SELLER": "Flexibility delivered (to the customer)", "GRID_OPERATOR": "Wheeling charges",
           "AGGREGATOR": "Platform fee", "GOVERNMENT": "Tax"}


def _amount(minor: int, currency: str) -> str:
    return format(Decimal(minor).scaleb(-exponent(currency)), "f")


def latest(session: Session, order: BecknOrder) -> dict[str, Any] | None:
    """The latest settled window of the order's devices: run, window and the devices' rows."""
    e, d, r, w = store.Enrollment, records.SettlementDevice, records.SettlementRun, store.FlexWindow
    enrollment_ids = select(e.id).where(e.program_id == order.program_id, e.external_ref == order.id)
    hit = session.execute(
        select(r, w).join(w, w.id == r.window_id).join(d, d.run_id == r.id)
        .where(r.superseded_time.is_(None), d.enrollment_id.in_(enrollment_ids))
        .order_by(w.end.desc(), r.id.desc()).limit(1)
    ).first()
    if hit is None:
        return None
    run, window = hit
    rows = records.device_rows(session, run.id, enrollment_ids=list(session.scalars(enrollment_ids)))
    return {"run": run, "window": window, "rows": rows}


def order_settlement(session: Session, order: BecknOrder, item_id: str) -> dict[str, Any] | None:
    """{"quote", "seller_amount", "tags"} for the order's latest settled window, or None."""
    got = latest(session, order)
    if got is None:
        return None
    run, window, rows = got["run"], got["window"], got["rows"]
    currency = run.currency
    by_role = dict.fromkeys(ROLES, 0)
    flows: dict[tuple[str, str], int] = {}
    for row in rows:
        for f in json.loads(row.detail)["flows"]:
            by_role[f["role"]] += f["amount_minor"]
            flows[(f["role"], f["party"])] = flows.get((f["role"], f["party"]), 0) + f["amount_minor"]
    total = sum(by_role.values())
    energy = {k: 0.0 for k in ("setpoint", "delivered", "credited")}
    hours = run.interval_s / 3600
    for row in rows:
        for iv in json.loads(row.detail)["intervals"]:
            energy["setpoint"] += (iv["setpoint_kw"] or 0.0) * hours
            energy["delivered"] += (iv["reduction_kw"] or 0.0) * hours
        energy["credited"] += row.energy_kwh
    tax_title = _tax_title(rows)
    report_id = f"settlement-{window.program_id}-{window.window_key}-v{run.version}"
    quote = {
        "price": {"currency": currency, "value": _amount(total, currency)},
        "breakup": [{"item": {"id": item_id}, "title": tax_title if role == "GOVERNMENT" else _TITLES[role],
                     "price": {"currency": currency, "value": _amount(by_role[role], currency)}}
                    for role in ROLES],
    }
    revenue_flows = [{"party": {"era": party, "role": role}, "amount": _amount(amount, currency),
                      "currency": currency, "description": tax_title if role == "GOVERNMENT" else _TITLES[role]}
                     for (role, party), amount in sorted(flows.items(), key=lambda kv: (ROLES.index(kv[0][0]), kv[0][1]))]
    tags = [
        tag_group("settlement", [
            tag("report-id", report_id), tag("window", window.window_key), tag("version", str(run.version)),
            tag("reason", run.reason), tag("devices", str(len(rows))),
            tag("cleared-kwh", _kwh(energy["setpoint"])), tag("delivered-kwh", _kwh(energy["delivered"])),
            tag("credited-kwh", _kwh(energy["credited"])), tag("total", _amount(total, currency)),
            tag("currency", currency),
        ], "Settlement of the latest measured window"),
        tag_group("revenue-flows", [tag("revenue-flows", json.dumps(revenue_flows, separators=(",", ":")))],
                  "Who gets which part (revenueFlows)"),
    ]
    return {"quote": quote, "seller_amount": _amount(by_role["SELLER"], currency), "tags": tags,
            "report_id": report_id}


def _tax_title(rows: Any) -> str:
    for row in rows:
        for f in json.loads(row.detail)["flows"]:
            if f["role"] == "GOVERNMENT":
                return f["description"]
    return "Tax"


def _kwh(x: float) -> str:
    return dec(round(x, 6))


def orders_to_tell(session: Session, run_id: int) -> list[BecknOrder]:
    """The Beckn orders with a device in this settlement run (any state: a customer who left still
    hears what they earned)."""
    e, d = store.Enrollment, records.SettlementDevice
    order_ids = select(e.external_ref).join(d, d.enrollment_id == e.id).where(
        d.run_id == run_id, e.source == "beckn", e.external_ref.is_not(None)).distinct()
    return list(session.scalars(select(BecknOrder).where(BecknOrder.id.in_(order_ids))
                                .where(BecknOrder.state != "draft").order_by(BecknOrder.created_time)))
