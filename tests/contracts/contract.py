"""Loading the contract documents of uplink/schemas/ and validating payloads through them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from kuat.uplink import schemas

SCHEMAS_DIR = Path(str(resources.files(schemas)))
ASYNCAPI_META = Path(__file__).with_name("asyncapi-3.0.0.schema.json")
JSON_SCHEMAS = sorted(p.stem for p in SCHEMAS_DIR.glob("*.json"))
# The Ed25519 issuer "korem" of the documents' signed examples: RFC 8032's published TEST 1 key,
# the key of tests/fixtures/orders/vectors.json (anyone can sign with it: tests only).
KOREM_PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def load_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS_DIR / name).read_text("utf-8"))


@cache
def registry() -> Registry:
    reg: Registry = Registry()
    for name in JSON_SCHEMAS:
        doc = schemas.load(name)
        reg = reg.with_resource(doc["$id"], Resource.from_contents(doc))
    return reg


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for the schema file ``name`` (stem), its relative $refs resolved."""
    schema = schemas.load(name)
    return Draft202012Validator(schema, registry=registry(), format_checker=FormatChecker())


def ref_stem(ref: str) -> str:
    """``./order.v1.json`` -> ``order.v1``: the schema file a document's $ref names."""
    assert ref.startswith("./") and ref.endswith(".json"), ref
    return ref[2:-5]


def resolve(doc: dict[str, Any], pointer: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``{"$ref": "#/a/b"}`` (AsyncAPI/OpenAPI components) within ``doc``."""
    while "$ref" in pointer and pointer["$ref"].startswith("#/"):
        node: Any = doc
        for part in pointer["$ref"][2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        pointer = node
    return pointer


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
