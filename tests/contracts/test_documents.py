"""The contracts in uplink/schemas/ are valid documents and match what kuat really does.

Every JSON Schema is a valid draft 2020-12 schema; the AsyncAPI document validates against the
official AsyncAPI 3.0.0 JSON Schema (vendored beside this file, from the @asyncapi/specs 6.11.1
package, Apache-2.0); the OpenAPI document passes openapi-spec-validator. Every example in them
validates against its schema *and* is accepted by kuat's own parser; documents the schemas
refuse are refused by kuat too; the topics they name are the topics kuat uses.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.readers import read_from_filename

from kuat.quota.orders import load_public_key, sign_order, verify_order
from kuat.quota.schedule import BookOutcome, ScheduleBook, parse_csv, parse_json
from kuat.uplink.mqtt import topic_base
from kuat.uplink.quota_source import DEFAULT_QUOTA_PREFIX, quota_topics, split_documents
from kuat.uplink.register_replay import parse_replay
from tests.contracts.contract import (
    ASYNCAPI_META,
    JSON_SCHEMAS,
    KOREM_PUBLIC_HEX,
    SCHEMAS_DIR,
    dumps,
    load_yaml,
    ref_stem,
    resolve,
    validator,
)

KEY = b"kegoc-example-key-0123456789abcdef"
# The Ed25519 issuer of the documents' examples: RFC 8032's published test key (the vectors').
KOREM = load_public_key(KOREM_PUBLIC_HEX)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 17:00 Astana
ORDER = {
    "id": "KEGOC-2026-11-25-0042",
    "issuer": "kegoc",
    "site": "ekibastuz-1",
    "target_mw": 5.5,
    "start": "2026-11-25T18:00:00+05:00",
    "end": "2026-11-25T22:00:00+05:00",
    "issued_at": "2026-11-25T16:55:00+05:00",
}


# --- the documents themselves ----------------------------------------------------------


@pytest.mark.parametrize("name", JSON_SCHEMAS)
def test_every_json_schema_is_a_valid_2020_12_schema(name: str) -> None:
    schema = json.loads((SCHEMAS_DIR / f"{name}.json").read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"/{name}.json")


def asyncapi_validator() -> jsonschema.protocols.Validator:
    meta = json.loads(ASYNCAPI_META.read_text("utf-8"))
    return jsonschema.validators.validator_for(meta)(meta)


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    doc = load_yaml("asyncapi.yaml")
    errors = [e.message for e in asyncapi_validator().iter_errors(doc)]
    assert errors == []


def test_the_asyncapi_check_catches_a_broken_document() -> None:
    # The 2.x verb where 3.0 wants send/receive, and a channel without its address type.
    doc = load_yaml("asyncapi.yaml")
    bad = copy.deepcopy(doc)
    bad["operations"]["publishInventory"]["action"] = "publish"
    assert not asyncapi_validator().is_valid(bad)
    bad = copy.deepcopy(doc)
    bad["channels"]["orders"]["address"] = 42
    assert not asyncapi_validator().is_valid(bad)


def test_openapi_document_is_valid_openapi_3_1() -> None:
    spec, base_uri = read_from_filename(str(SCHEMAS_DIR / "openapi.yaml"))
    validate_openapi(spec, base_uri=base_uri)  # raises with the first problem


def test_the_openapi_check_catches_a_broken_document() -> None:
    spec, base_uri = read_from_filename(str(SCHEMAS_DIR / "openapi.yaml"))
    del spec["paths"]["/api/orders/{site}"]["get"]["responses"]["304"]
    spec["paths"]["/api/orders/{site}"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(Exception, match="body"):
        validate_openapi(spec, base_uri=base_uri)


# --- topics ----------------------------------------------------------------------------


def addresses() -> dict[str, str]:
    doc = load_yaml("asyncapi.yaml")
    return {name: ch["address"] for name, ch in doc["channels"].items()}


def test_asyncapi_addresses_are_the_topics_kuat_uses() -> None:
    a = addresses()
    bin_, site = "230140000001", "ekibastuz-1"
    base = topic_base("kz/hsc-register/v1", bin_, site)
    fill = {"owner_bin": bin_, "site": site}
    for name in ("inventory", "events", "status", "replay"):
        assert a[name].format(**fill) == f"{base}/{name}"
    # one agent's stream of a split site
    shard = topic_base("kz/hsc-register/v1", bin_, site, "hall-a")
    for name in ("inventory", "events", "status", "replay"):
        channel = f"shard{name.capitalize()}"
        assert a[channel].format(**fill, agent_id="hall-a") == f"{shard}/{name}"
    schedule_topic, orders_topic = quota_topics(site, DEFAULT_QUOTA_PREFIX)
    assert a["schedule"].format(**fill) == schedule_topic
    assert a["orders"].format(**fill) == orders_topic


def test_every_operation_names_a_channel_and_every_channel_has_an_operation() -> None:
    doc = load_yaml("asyncapi.yaml")
    used = {op["channel"]["$ref"].rsplit("/", 1)[-1] for op in doc["operations"].values()}
    assert used == set(doc["channels"])
    sends = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]
        for op in doc["operations"].values()
        if op["action"] == "send"
    }
    # kuat publishes to the register, and the quota results to the energy company
    assert sends == {
        "inventory", "events", "status",
        "shardInventory", "shardEvents", "shardStatus",
        "hours", "state",
    }  # fmt: skip


# --- examples: valid against the schema, accepted by kuat ------------------------------


def payload_schema(doc: dict[str, Any], message: dict[str, Any]) -> str | None:
    payload = resolve(doc, message)["payload"]
    schema = payload.get("schema", payload)
    return ref_stem(schema["$ref"]) if "$ref" in schema else None


def asyncapi_examples() -> list[tuple[str, str | None, str, Any]]:
    doc = load_yaml("asyncapi.yaml")
    out = []
    for name, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            out.append((name, payload_schema(doc, message), message["contentType"], example))
    return out


def openapi_examples() -> list[tuple[str, str | None, str, Any]]:
    doc = load_yaml("openapi.yaml")
    out = []
    for path, item in doc["paths"].items():
        for media, content in item["get"]["responses"]["200"]["content"].items():
            ref = content["schema"].get("$ref")
            for example in content.get("examples", {}).values():
                out.append((path, ref_stem(ref) if ref else None, media, example))
    return out


def accepted_by_kuat(media: str, value: Any) -> None:
    """The body goes through what the agent does with it: split, then the book or the order
    check; a schedule must be ADDED, an order verified (``value`` may be a list of orders)."""
    if media == "text/csv":
        assert parse_csv(value, site="ekibastuz-1").total_mwh > 0
        return
    for text, fmt in split_documents(dumps(value), "json"):
        doc = json.loads(text)
        if "signature" in doc:
            verify_order(text, {"kegoc": KEY, "korem": KOREM}, now=NOW, site="ekibastuz-1")
        else:
            change = ScheduleBook().offer(text, fmt, site="ekibastuz-1")
            assert change.outcome is BookOutcome.ADDED, change.reasons


EXAMPLES = asyncapi_examples() + openapi_examples()


def test_the_documents_carry_examples() -> None:
    kinds = {(schema, media) for _, schema, media, _ in EXAMPLES}
    assert ("schedule.v1", "application/json") in kinds
    assert ("schedules.v1", "application/json") in kinds
    assert ("orders.v1", "application/json") in kinds
    assert ("order.v1", "application/json") in kinds
    assert (None, "text/csv") in kinds


@pytest.mark.parametrize(
    ("where", "schema", "media", "example"),
    EXAMPLES,
    ids=[f"{w}:{e.get('name') or e.get('summary') or m}" for w, _, m, e in EXAMPLES],
)
def test_every_example_is_valid_and_accepted(
    where: str, schema: str | None, media: str, example: dict[str, Any]
) -> None:
    value = example.get("payload", example.get("value"))
    if schema is not None:
        validator(schema).validate(value)
    # What kuat sends is checked against its real messages elsewhere (tests/contracts/*_wire)
    if schema == "replay.v1":
        assert parse_replay(dumps(value).encode()).from_seq == value["from_seq"]
    elif schema not in ("status.v1", "quota-hour.v1", "quota-state.v1"):
        accepted_by_kuat(media, value)


def test_a_reference_signed_order_fits_the_order_schema() -> None:
    signed = json.loads(sign_order(ORDER, KEY))
    validator("order.v1").validate(signed)
    validator("orders.v1").validate([signed, signed])
    accepted_by_kuat("application/json", [signed])


# --- what the schemas refuse, kuat refuses --------------------------------------------

DAY = {"site": "ekibastuz-1", "date": "2026-11-25", "version": 1}
HOURS = [{"hour": h, "mwh": 1} for h in range(1, 25)]
REFUSED_SCHEDULES = {
    "23 hours": {**DAY, "mwh": [1.0] * 23},
    "negative hour": {**DAY, "mwh": [1.0] * 23 + [-1.0]},
    "over 1000 MWh": {**DAY, "mwh": [1.0] * 23 + [1001.0]},
    "no date": {"site": "ekibastuz-1", "mwh": [1.0] * 24},
    "bad date": {**DAY, "date": "25.11.2026", "mwh": [1.0] * 24},
    "unknown source": {**DAY, "source": "coal", "mwh": [1.0] * 24},
    "both forms": {**DAY, "mwh": [1.0] * 24, "hours": HOURS},
    "neither form": {**DAY},
    "hour 25": {**DAY, "hours": [{"hour": h, "mwh": 1} for h in range(2, 26)]},
    "text volume": {**DAY, "mwh": [1.0] * 23 + ["a lot"]},
}


@pytest.mark.parametrize("case", sorted(REFUSED_SCHEDULES))
def test_schedules_the_schema_refuses_kuat_refuses(case: str) -> None:
    doc = REFUSED_SCHEDULES[case]
    assert not validator("schedule.v1").is_valid(doc)
    with pytest.raises(ValueError):
        parse_json(dumps(doc))


REFUSED_ORDERS = {
    "no signature": {k: v for k, v in ORDER.items()},
    "no offset": {**ORDER, "start": "2026-11-25T18:00:00"},
    "negative target": {**ORDER, "target_mw": -1},
    "target as text": {**ORDER, "target_mw": "5"},
    "no issuer": {k: v for k, v in ORDER.items() if k != "issuer"},
    "cancelled as text": {**ORDER, "cancelled": "yes"},
}


@pytest.mark.parametrize("case", sorted(REFUSED_ORDERS))
def test_orders_the_schema_refuses_kuat_refuses(case: str) -> None:
    doc = REFUSED_ORDERS[case]
    if case != "no signature":
        doc = json.loads(sign_order(doc, KEY))
    assert not validator("order.v1").is_valid(doc)
    with pytest.raises(ValueError):
        verify_order(dumps(doc), {"kegoc": KEY}, now=NOW, site="ekibastuz-1")


def test_address_parameters_are_declared() -> None:
    doc = load_yaml("asyncapi.yaml")
    for name, channel in doc["channels"].items():
        named = set(re.findall(r"{(\w+)}", channel["address"]))
        assert named == set(channel.get("parameters", {})), name
