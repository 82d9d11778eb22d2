"""Validate register payloads against the JSON Schemas shipped in uplink/schemas/."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from kuat.uplink import schemas

NAMES = ("miner.v1", "inventory.v1", "event.v1", "status.v1")


@cache
def _validator(name: str) -> Draft202012Validator:
    registry: Registry = Registry()
    for n in NAMES:
        doc = schemas.load(n)
        registry = registry.with_resource(doc["$id"], Resource.from_contents(doc))
    schema = schemas.load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


def validate(name: str, payload: Any) -> None:
    _validator(name).validate(payload)
