"""The harness's procedures and versions as JSON, read with cactus-client's own Python.

    python -m server.conformance.catalog    → {"versions": {...}, "procedures": [{id, description,
                                               category, steps: [id…], clients: [{id, type}]}]}

The driver runs under derflex's Python, which cannot import cactus-test-definitions (it needs
Python 3.12); it asks this module instead.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any


def catalog() -> dict[str, Any]:
    from cactus_test_definitions.server.test_procedures import get_all_test_procedures

    procedures = [
        {
            "id": str(tid),
            "description": tp.description,
            "category": tp.category,
            "steps": [step.id for step in tp.steps],
            "clients": [
                {"id": c.id, "type": str(c.client_type) if c.client_type else "any"}
                for c in tp.preconditions.required_clients
            ],
        }
        for tid, tp in get_all_test_procedures().items()
    ]
    versions = {name: version(name) for name in ("cactus-client", "cactus-test-definitions", "envoy-schema")}
    return {"versions": versions, "procedures": procedures}


def main() -> None:
    json.dump(catalog(), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
