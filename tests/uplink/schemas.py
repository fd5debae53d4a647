"""Validate published messages against the JSON Schemas in docs/schemas (with jsonschema)."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.conftest import REPO

SCHEMA_DIR = REPO / "docs" / "schemas"
KINDS = ("report", "alert", "ack", "reading", "status")


@lru_cache(maxsize=None)
def _validators() -> dict[str, Draft202012Validator]:
    docs = {p.stem: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())
    out = {}
    for name, doc in docs.items():
        Draft202012Validator.check_schema(doc)
        out[name] = Draft202012Validator(doc, registry=registry)
    return out


def errors(message: dict[str, Any]) -> list[str]:
    """Every schema violation of one message (empty if valid), checked against its kind's schema."""
    kind = message.get("kind")
    validator = _validators().get(kind if kind in KINDS else "envelope")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(message)]
