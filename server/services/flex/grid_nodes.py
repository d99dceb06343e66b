"""Grid nodes as operators author them: the tree with adders and flow limits, as the domain sees it
(programs.grid) for clearing."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from sqlalchemy.orm import Session
from programs.grid import GridNode as DomainNode
from programs.grid import GridTree
from server.db import flex as store
from server.services import clock
from server.services.errors import Conflict, Invalid, NotFound, check_text, no_unknown_keys


_NODE_KEYS = {"name", "parent", "load_percent", "adder_per_percent", "congestion_multiplier",
              "max_forward_kw", "max_reverse_kw", "current_load_kw"}


def _domain_nodes(rows: list[store.GridNode]) -> list[DomainNode]:
    names = {r.id: r.name for r in rows}
    return [
        DomainNode(
            id=r.name, parent=names.get(r.parent_id) if r.parent_id else None, load_percent=r.load_percent,
            adder_per_percent=r.adder_per_percent, congestion_multiplier=r.congestion_multiplier,
            max_forward_kw=r.max_forward_kw, max_reverse_kw=r.max_reverse_kw, current_load_kw=r.current_load_kw,
        )
        for r in rows
    ]


def grid_tree(session: Session) -> tuple[GridTree, dict[int, int]]:
    """The grid as the domain sees it, and each node row's index in it."""
    rows = list(store.grid_nodes(session))
    tree = GridTree(_domain_nodes(rows))
    index = {n.id: i for i, n in enumerate(tree.nodes)}
    return tree, {r.id: index[r.name] for r in rows}


def _number(body: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{key} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Invalid(f"{key} must be a finite number")
    return number


def put_grid_node(session: Session, body: Any, now: int) -> dict[str, Any]:
    """Create a grid node, or change the one of that name (fields not given keep their value)."""
    no_unknown_keys(body, _NODE_KEYS, "a grid node")
    name = check_text(body.get("name"), "name", 64)
    if not name or not name.strip():
        raise Invalid("name is required: the operator's id of the node, e.g. \"feeder-12\"")
    row = store.grid_node_by_name(session, name)
    old = {c: getattr(row, c) for c in ("load_percent", "adder_per_percent", "congestion_multiplier",
                                         "max_forward_kw", "max_reverse_kw", "current_load_kw")} if row else {
        "load_percent": 0.0, "adder_per_percent": 0.0, "congestion_multiplier": 1.0,
        "max_forward_kw": None, "max_reverse_kw": None, "current_load_kw": None}
    values = {k: _number(body, k, v) for k, v in old.items()}
    for k in ("load_percent", "adder_per_percent", "congestion_multiplier"):
        if values[k] is None:
            raise Invalid(f"{k} must be a number")
    parent_id = row.parent_id if row else None
    if "parent" in body:
        parent_name = body["parent"]
        if parent_name is None:
            parent_id = None
        else:
            parent = store.grid_node_by_name(session, check_text(parent_name, "parent", 64) or "")
            if parent is None:
                raise Invalid(f"parent: no grid node {parent_name!r}")
            parent_id = parent.id
    if row is None:
        row = store.GridNode(name=name, updated_time=now)
        session.add(row)
    row.parent_id = parent_id
    for k, v in values.items():
        setattr(row, k, v)
    row.updated_time = now
    session.flush()
    try:
        GridTree(_domain_nodes(list(store.grid_nodes(session))))
    except ValueError as exc:
        raise Invalid(f"invalid grid node: {exc}") from None
    return grid_node_view(session, row)


def grid_node_view(session: Session, row: store.GridNode) -> dict[str, Any]:
    tree, index = grid_tree(session)
    node = tree.nodes[index[row.id]]
    parent = session.get(store.GridNode, row.parent_id) if row.parent_id else None
    return {
        "name": row.name,
        "parent": parent.name if parent else None,
        "load_percent": row.load_percent,
        "adder_per_percent": row.adder_per_percent,
        "congestion_multiplier": row.congestion_multiplier,
        "adder": node.adder,
        "path_adder": tree.path_adder(node.id),
        "max_forward_kw": row.max_forward_kw,
        "max_reverse_kw": row.max_reverse_kw,
        "current_load_kw": row.current_load_kw,
        "updated": clock.iso(row.updated_time),
    }


def list_grid_nodes(session: Session) -> list[dict[str, Any]]:
    return [grid_node_view(session, r) for r in store.grid_nodes(session)]


def delete_grid_node(session: Session, name: str) -> None:
    row = store.grid_node_by_name(session, check_text(name, "name", 64) or "")
    if row is None:
        raise NotFound(f"no grid node {name!r}")
    if any(r.parent_id == row.id for r in store.grid_nodes(session)):
        raise Conflict(f"grid node {name!r} has child nodes: move or delete them first")
    if store.enrollments_behind(session, row.id):
        raise Conflict(f"grid node {name!r} has enrolled devices behind it")
    if any(name in json.loads(p.spec).get("grid_node_ids", []) for p in store.programs(session, active_only=True)):
        raise Conflict(f"grid node {name!r} is in an active program's service area")
    session.delete(row)
