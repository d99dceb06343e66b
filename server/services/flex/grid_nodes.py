"""Grid nodes as operators author them: the tree with adders and flow limits, as the domain sees it
(programs.grid) for clearing; the PutGridNode and DeleteGridNode commands
(server.services.flex.commands) and how nodes read back (server.services.flex.results).

A node is checked with the tree it would make (the domain's rules: numbers 0 or more, a flow limit
needs the current load, a known parent, no cycle) before anything is written.
`put_grid_node` and `delete_grid_node` take admin JSON, for scripts and tests."""

from __future__ import annotations

import json
import re
from typing import Any
from sqlalchemy.orm import Session
from programs.grid import GridNode as DomainNode
from programs.grid import GridTree
from server.db import flex as store
from server.services.flex.command_errors import CommandConflict, CommandNotFound, InvalidCommand
from server.services.flex.commands import (
    KEEP,
    NODE_NUMBERS,
    DeleteGridNode,
    PutGridNode,
    parse_delete_grid_node,
    parse_put_grid_node,
)
from server.services.flex.results import GridNodeDeleted, GridNodeResult

# a new node's values where the command does not give them
_DEFAULTS: dict[str, float | None] = {"load_percent": 0.0, "adder_per_percent": 0.0, "congestion_multiplier": 1.0,
                                      "max_forward_kw": None, "max_reverse_kw": None, "current_load_kw": None}
_NODE_NAME = re.compile(r"""grid node ('[^']*'|"[^"]*")""")


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


def _field_of(message: str) -> str | None:
    """The field a programs.grid message is about (it names the node's field, or its parent)."""
    words = _NODE_NAME.sub("", message)  # a node's own name may hold any word
    return next((k for k in NODE_NUMBERS if k in words), "parent" if "parent" in words else None)


def put(session: Session, command: PutGridNode, now: int) -> GridNodeResult:
    """The PutGridNode command: create the node, or change the fields given of it."""
    row = store.grid_node_by_name(session, command.name)
    values = {k: getattr(row, k) if row is not None else _DEFAULTS[k] for k in NODE_NUMBERS}
    values.update({k: v for k in NODE_NUMBERS if (v := getattr(command, k)) is not KEEP})
    rows = list(store.grid_nodes(session))
    names = {r.id: r.name for r in rows}
    parent_id = row.parent_id if row is not None else None
    if command.parent is not KEEP:
        parent_id = None
        if command.parent is not None:
            parent = store.grid_node_by_name(session, command.parent)
            if parent is None:
                raise InvalidCommand("parent", f"parent: no grid node {command.parent!r}")
            parent_id = parent.id
    try:  # the tree as it would be
        node = DomainNode(id=command.name, parent=names.get(parent_id) if parent_id else None, **values)
        GridTree([n for n in _domain_nodes(rows) if n.id != command.name] + [node])
    except ValueError as exc:
        raise InvalidCommand(_field_of(str(exc)), f"invalid grid node: {exc}") from None
    if row is None:
        row = store.GridNode(name=command.name, updated_time=now)
        session.add(row)
    row.parent_id = parent_id
    for k, v in values.items():
        setattr(row, k, v)
    row.updated_time = now
    session.flush()
    return grid_node_result(session, row)


def put_grid_node(session: Session, body: Any, now: int) -> dict[str, Any]:
    """Create a grid node, or change the one of that name (fields not given keep their value)."""
    return put(session, parse_put_grid_node(body), now).view()


def grid_node_result(session: Session, row: store.GridNode) -> GridNodeResult:
    tree, index = grid_tree(session)
    node = tree.nodes[index[row.id]]
    parent = session.get(store.GridNode, row.parent_id) if row.parent_id else None
    return GridNodeResult(
        name=row.name, parent=parent.name if parent else None, load_percent=row.load_percent,
        adder_per_percent=row.adder_per_percent, congestion_multiplier=row.congestion_multiplier, adder=node.adder,
        path_adder=tree.path_adder(node.id), max_forward_kw=row.max_forward_kw, max_reverse_kw=row.max_reverse_kw,
        current_load_kw=row.current_load_kw, updated=row.updated_time,
    )


def list_grid_nodes(session: Session) -> list[dict[str, Any]]:
    return [grid_node_result(session, r).view() for r in store.grid_nodes(session)]


def delete(session: Session, command: DeleteGridNode) -> GridNodeDeleted:
    """The DeleteGridNode command: only a node nothing uses (no child node, no enrollment, no active
    program's service area)."""
    name = command.name
    row = store.grid_node_by_name(session, name)
    if row is None:
        raise CommandNotFound("name", f"no grid node {name!r}")
    if any(r.parent_id == row.id for r in store.grid_nodes(session)):
        raise CommandConflict("name", f"grid node {name!r} has child nodes: move or delete them first")
    if store.enrollments_behind(session, row.id):
        raise CommandConflict("name", f"grid node {name!r} has enrolled devices behind it")
    if any(name in json.loads(p.spec).get("grid_node_ids", []) for p in store.programs(session, active_only=True)):
        raise CommandConflict("name", f"grid node {name!r} is in an active program's service area")
    session.delete(row)
    session.flush()
    return GridNodeDeleted(name)


def delete_grid_node(session: Session, name: str) -> None:
    """Delete a grid node by name (for scripts and tests; transports execute DeleteGridNode)."""
    delete(session, parse_delete_grid_node(name))
