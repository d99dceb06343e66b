"""DER curves (`dc`): DERCurve and DERCurveList from the stored rows (server.db.curves), the
operator's JSON view of a curve, and the curve links of stored controls.

A stored control (a DERControlBase document, server.services.sep2.mappers.derp) names a curve by
the token `dc:{curve id}` as the href of its curve-linked mode (opModVoltVar, opModFreqWatt …):
the real href, `/edev/{id}/derp/{p}/dc/{c}`, depends on the device reading it, so it is made
when the control is served (`device_control_base`). Operators see and give the curve id.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from server.sep2 import codec, uris
from server.sep2.curves import CURVE_TYPE_OF_MODE, CURVE_TYPES, Y_REF_TYPES, DERCurve, DERCurveList
from server.sep2.derp import DERControlBase
from server.sep2.types import LINK

_TOKEN = "dc:{dc_id}"
_TOKEN_RE = re.compile(r"dc:([0-9]{1,10})")

# The curve-linked modes of DERControlBase: (field name, 2030.5 name), in schema order.
CURVE_MODE_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.metadata["xml"])
    for f in dataclasses.fields(DERControlBase)
    if f.metadata["kind"] == LINK and f.metadata["xml"] in CURVE_TYPE_OF_MODE
)
CURVE_MODES: frozenset[str] = frozenset(xml for _, xml in CURVE_MODE_FIELDS)


def stored_href(curve_id: int) -> str:
    """What a stored control holds as the href of a curve-linked mode."""
    return _TOKEN.format(dc_id=curve_id)


def curve_id_of(stored: str) -> int | None:
    """The curve id of a stored curve link; None when `stored` is not one."""
    match = _TOKEN_RE.fullmatch(stored)
    return int(match[1]) if match else None


# ---------------------------------------------------------------------------------- DERCurve


def curve_document(curve: DERCurve) -> str:
    """The stored text of a curve: its canonical document without href."""
    return codec.render(dataclasses.replace(curve, href=None)).decode()


@lru_cache(maxsize=1024)
def stored_curve(xml: str) -> DERCurve:
    """A stored curve as its model (shared: treat it as read-only)."""
    return codec.parse(xml.encode(), DERCurve)


def der_curve(edev_id: int, derp_id: int, row: Any) -> DERCurve:
    """A curve (row: id, document) as `edev_id` sees it in DER program `derp_id`."""
    href = uris.href(uris.DC, edev_id=edev_id, derp_id=derp_id, dc_id=row.id)
    return dataclasses.replace(stored_curve(row.document), href=href)


def der_curve_list(edev_id: int, derp_id: int, rows: Sequence[Any], all_: int) -> DERCurveList:
    return DERCurveList(
        href=uris.href(uris.DC_LIST, edev_id=edev_id, derp_id=derp_id),
        all=all_,
        results=len(rows),
        der_curves=[der_curve(edev_id, derp_id, r) for r in rows],
    )


def curve_json(row: Any) -> dict[str, Any]:
    """A curve for operators (row: id, program_id, document): the 2030.5 names, plus its id, DER
    program and the names of its type and y units."""
    curve = stored_curve(row.document)
    view: dict[str, Any] = {"id": row.id, "program_id": row.program_id}
    for f in dataclasses.fields(curve):
        value = getattr(curve, f.name)
        if value is None or f.name == "href":
            continue
        if f.name == "curve_data":
            value = [{p.metadata["xml"]: getattr(point, p.name) for p in dataclasses.fields(point)
                      if getattr(point, p.name) is not None} for point in value]
        view[f.metadata["xml"]] = value
    view["curveTypeName"] = CURVE_TYPES.get(curve.curve_type)
    view["yRefTypeName"] = Y_REF_TYPES.get(curve.y_ref_type)
    return view


# ------------------------------------------------------------------------ controls' curve links


def has_curve_links(base: DERControlBase) -> bool:
    return any(getattr(base, name) is not None for name, _ in CURVE_MODE_FIELDS)


def device_control_base(base: DERControlBase, edev_id: int, derp_id: int) -> DERControlBase:
    """A stored control as `edev_id` sees it in DER program `derp_id`: its curve links made real
    hrefs. Without curve links, `base` itself (no copy: most controls have none)."""
    changes: dict[str, str] = {}
    for name, _ in CURVE_MODE_FIELDS:
        value = getattr(base, name)
        if value is not None:
            curve_id = curve_id_of(value)
            if curve_id is not None:
                changes[name] = uris.href(uris.DC, edev_id=edev_id, derp_id=derp_id, dc_id=curve_id)
    return dataclasses.replace(base, **changes) if changes else base


def curve_fields(spec: Any) -> dict[str, str]:
    """The curve-linked modes of an operator's control object as DERControlBase fields, each still
    naming its curve as given (an id or an href: server.services.sep2.dc.link_curves resolves
    them); ValueError for a value that cannot name a curve."""
    fields: dict[str, str] = {}
    for name, xml in CURVE_MODE_FIELDS:
        if xml not in spec:
            continue
        value = spec[xml]
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, int) and value <= 0):
            raise ValueError(f"{xml} names a DER curve: its id (a positive integer) or its href")
        fields[name] = str(value)[:2048]
    return fields


def unresolved_curve_links(base: DERControlBase) -> list[str]:
    """The curve-linked modes of `base` whose link is not a stored curve token yet."""
    return [xml for name, xml in CURVE_MODE_FIELDS
            if getattr(base, name) is not None and curve_id_of(getattr(base, name)) is None]


def control_json_curves(view: dict[str, Any]) -> dict[str, Any]:
    """An operator's JSON view of a stored control with its curve links shown as curve ids."""
    for key in CURVE_MODES & view.keys():
        curve_id = curve_id_of(view[key]) if isinstance(view[key], str) else None
        if curve_id is not None:
            view[key] = curve_id
    return view
