"""Validate Beckn v1.1.0 messages against the official OpenAPI documents.

The documents are read from `$BECKN_REFERENCE_DIR` (`v1.1.0-transaction.yaml`, `v1.1.0-meta.yaml`;
never copied into the project). Without the variable, or without jsonschema / PyYAML, the fixture
`beckn_schema` skips the test and says why.

OpenAPI 3.0 schema objects are a JSON Schema draft-4 dialect: each body is validated with
`jsonschema.Draft4Validator` against the request-body schema of its path (the callback's path,
e.g. `/on_select`), with `$ref`s resolved inside the same document, and the format checker on.

Deviations from the official documents, applied to an in-memory copy only:

* `/rating_categories` in meta.yaml requires `message.return_reasons` (a copy-paste slip from
  `/return_reasons`); it is replaced by `rating_categories`, the property the path defines.
* `on_aggregate` (the seed's building-block action) has no schema: `validate` refuses to be
  asked for it, so a test cannot believe it validated something it did not.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

REFERENCE_ENV = "BECKN_REFERENCE_DIR"
META_ACTIONS = {"get_cancellation_reasons", "cancellation_reasons", "get_rating_categories", "rating_categories",
                "get_return_reasons", "return_reasons"}


def _pointer(action: str) -> str:
    return f"/paths/~1{action}/post/requestBody/content/application~1json/schema"


class BecknSchema:
    """The two official documents, loaded once."""

    def __init__(self, transaction: dict[str, Any], meta: dict[str, Any]):
        self.transaction = transaction
        self.meta = copy.deepcopy(meta)
        rating = self.meta["paths"]["/rating_categories"]["post"]["requestBody"]["content"]["application/json"]
        message = rating["schema"]["properties"]["message"]
        if message.get("required") == ["return_reasons"]:
            message["required"] = ["rating_categories"]

    def errors(self, action: str, body: dict[str, Any]) -> list[str]:
        """Every schema error of `body` posted to `/{action}` ([] when valid)."""
        import jsonschema

        if action == "on_aggregate" or action == "aggregate":
            raise ValueError("the official v1.1.0 schema has no aggregate/on_aggregate")
        spec = self.meta if action in META_ACTIONS else self.transaction
        if f"/{action}" not in spec["paths"]:
            raise ValueError(f"no path /{action} in the official v1.1.0 documents")
        root = {"components": spec["components"], "paths": spec["paths"], "allOf": [{"$ref": "#" + _pointer(action)}]}
        validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.FormatChecker())
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in validator.iter_errors(body)]

    def validate(self, action: str, body: dict[str, Any]) -> None:
        """AssertionError listing the schema errors of `body` for `/{action}`."""
        found = self.errors(action, body)
        if found:
            raise AssertionError(f"not a valid v1.1.0 /{action} body:\n  " + "\n  ".join(found[:20]))


def load() -> BecknSchema:
    """The documents from $BECKN_REFERENCE_DIR, or pytest.skip saying what is missing."""
    folder = os.environ.get(REFERENCE_ENV)
    if not folder:
        pytest.skip(f"{REFERENCE_ENV} is not set: point it at the official Beckn v1.1.0 reference folder "
                    "to validate the BPP's messages against v1.1.0-transaction.yaml and v1.1.0-meta.yaml")
    pytest.importorskip("jsonschema", reason="jsonschema is not installed: the messages cannot be validated")
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the official documents cannot be read")
    docs = []
    for name in ("v1.1.0-transaction.yaml", "v1.1.0-meta.yaml"):
        path = Path(folder) / name
        if not path.is_file():
            pytest.fail(f"{REFERENCE_ENV}={folder} has no {name}")
        docs.append(yaml.safe_load(path.read_text(encoding="utf-8")))
    return BecknSchema(*docs)
