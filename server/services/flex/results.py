"""What the flexibility context's commands (and reads) give back: typed values, each with the
`view()` the admin API, the CLI and the Beckn BPP show as JSON. Times are UTC seconds here and
ISO 8601 in the views."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.services import clock


@dataclass(frozen=True)
class WindowResult:
    """One window of a program: when it runs and publishes, its state and clearing revision."""

    key: str
    start: int
    end: int
    publish_at: int
    state: str
    revision: int
    published: int | None
    note: str | None

    def view(self) -> dict[str, Any]:
        return {"key": self.key, "start": clock.iso(self.start), "end": clock.iso(self.end),
                "publish_at": clock.iso(self.publish_at), "state": self.state, "revision": self.revision,
                "published": clock.iso(self.published), "note": self.note}


@dataclass(frozen=True)
class ProgramResult:
    """A program: its state and version, enrollments per state, next windows and definition (the
    stored JSON text of programs.model)."""

    id: int
    name: str
    state: str
    version: int
    der_program_id: int
    enrollments: Mapping[str, int]
    created: int
    updated: int
    next_windows: tuple[WindowResult, ...]
    definition: str

    def view(self, *, brief: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id, "name": self.name, "state": self.state, "version": self.version,
            "der_program_id": self.der_program_id, "enrollments": dict(self.enrollments),
            "created": clock.iso(self.created), "updated": clock.iso(self.updated),
            "next_windows": [w.view() for w in self.next_windows],
        }
        if not brief:
            view["program"] = json.loads(self.definition)
        return view


@dataclass(frozen=True)
class GridNodeResult:
    """A grid node with its own adder and the adders summed along its path to the root."""

    name: str
    parent: str | None
    load_percent: float
    adder_per_percent: float
    congestion_multiplier: float
    adder: float
    path_adder: float
    max_forward_kw: float | None
    max_reverse_kw: float | None
    current_load_kw: float | None
    updated: int

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent, "load_percent": self.load_percent,
                "adder_per_percent": self.adder_per_percent, "congestion_multiplier": self.congestion_multiplier,
                "adder": self.adder, "path_adder": self.path_adder, "max_forward_kw": self.max_forward_kw,
                "max_reverse_kw": self.max_reverse_kw, "current_load_kw": self.current_load_kw,
                "updated": clock.iso(self.updated)}


@dataclass(frozen=True)
class GridNodeDeleted:
    name: str

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "deleted": True}


@dataclass(frozen=True)
class EnrollmentResult:
    """An enrollment; `offer` is its offer's JSON text (None: the default curve from its ratings)."""

    id: int
    program_id: int
    device_id: int
    customer: str
    kind: str
    grid_node: str | None
    offer: str | None
    state: str
    source: str
    external_ref: str | None
    created: int
    updated: int

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "program_id": self.program_id, "device_id": self.device_id, "customer": self.customer,
                "kind": self.kind, "grid_node": self.grid_node, "offer": json.loads(self.offer) if self.offer else None,
                "state": self.state, "source": self.source, "external_ref": self.external_ref,
                "created": clock.iso(self.created), "updated": clock.iso(self.updated)}


Result = WindowResult | ProgramResult | GridNodeResult | GridNodeDeleted | EnrollmentResult
