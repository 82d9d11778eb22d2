"""Signed orders a non-Python issuer can produce: the test vectors in tests/fixtures/orders/
(RFC 8785 canonical bodies, Ed25519 and HMAC-SHA256 signatures) hold against kuat and against
the cryptography library directly, and an Ed25519 issuer configured by its public key alone
gets its orders obeyed by the agent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import example, given
from hypothesis import strategies as st

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.quota_job import QuotaJob
from kuat.agent.state import SiteState
from kuat.quota.orders import (
    OrderError,
    canonical_body,
    limit_kw,
    load_public_key,
    sign_order,
    verify_order,
)
from kuat.quota.reasons import Code
from tests.contracts.contract import validator
from tests.fuzz.common import FUZZ, bounded, mutated_text

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests/fixtures/orders/vectors.json").read_text("utf-8"))
NOW = datetime.fromisoformat(VECTORS["now"])
SITE = VECTORS["site"]
ED = VECTORS["keys"]["korem"]
SEED = bytes.fromhex(ED["private_seed_hex"])
HMAC_KEY = VECTORS["keys"]["kegoc"]["key_utf8"].encode()
KEYS = {"korem": load_public_key(ED["public_hex"]), "kegoc": HMAC_KEY}
CASES = VECTORS["vectors"]


def test_the_vectors_cover_both_algorithms_and_refusals() -> None:
    assert {v["alg"] for v in CASES} == {"ed25519", "hmac-sha256"}
    assert any(not v["valid"] for v in CASES) and sum(v["valid"] for v in CASES) >= 6


@pytest.mark.parametrize("v", CASES, ids=[v["name"] for v in CASES])
def test_vector_canonical_body_and_signature(v: dict[str, Any]) -> None:
    doc = json.loads(v["order"])
    assert canonical_body(doc) == v["canonical"].encode("utf-8")
    signed = v.get("signed_body", v["canonical"]).encode("utf-8")
    sig = bytes.fromhex(v["signature"])
    if v["alg"] == "ed25519" and "another key" not in v["name"]:
        # Deterministic (RFC 8032): anyone holding the published seed reproduces it exactly.
        original = v["canonical"].replace('"target_mw":50', '"target_mw":5.5')
        expected = Ed25519PrivateKey.from_private_bytes(SEED).sign(
            signed if "signed_body" in v else original.encode()
        )
        assert expected == sig
    if v["alg"] == "hmac-sha256":
        assert hmac.new(HMAC_KEY, signed, hashlib.sha256).digest() == sig
    if v["valid"]:
        order = verify_order(v["order"], KEYS, now=NOW, site=SITE)
        assert order.issuer == doc["issuer"] and order.target_mw == float(doc["target_mw"])
        validator("order.v1").validate(doc)
    else:
        with pytest.raises(OrderError) as exc:
            verify_order(v["order"], KEYS, now=NOW, site=SITE)
        assert [r.code for r in exc.value.reasons] == [Code.ORDER_BAD_SIGNATURE]


def test_sign_order_with_an_ed25519_key_reproduces_the_vector() -> None:
    (basic,) = [v for v in CASES if v["name"] == "ed25519 basic"]
    doc = {k: val for k, val in json.loads(basic["order"]).items() if k != "signature"}
    text = sign_order(doc, Ed25519PrivateKey.from_private_bytes(SEED))
    assert json.loads(text)["signature"] == basic["signature"]


def test_a_forger_holding_the_public_key_cannot_pass_it_off_as_an_hmac_key() -> None:
    # The classic algorithm confusion: HMAC "keyed" with the public key everyone knows.
    doc = {k: v for k, v in json.loads(CASES[0]["order"]).items() if k != "signature"}
    for public in (bytes.fromhex(ED["public_hex"]), ED["public_hex"].encode(), ED["public_pem"]):
        forged = sign_order(doc, public if isinstance(public, bytes) else public.encode())
        with pytest.raises(OrderError) as exc:
            verify_order(forged, KEYS, now=NOW, site=SITE)
        assert [r.code for r in exc.value.reasons] == [Code.ORDER_BAD_SIGNATURE]


def test_an_hmac_issuer_does_not_accept_an_ed25519_signature() -> None:
    doc = {k: v for k, v in json.loads(CASES[0]["order"]).items() if k != "signature"}
    doc["issuer"] = "kegoc"
    with pytest.raises(OrderError):
        verify_order(
            sign_order(doc, Ed25519PrivateKey.from_private_bytes(SEED)), KEYS, now=NOW, site=SITE
        )


def test_public_key_forms() -> None:
    raw = bytes.fromhex(ED["public_hex"])
    for text in (ED["public_hex"], ED["public_hex"].upper(), ED["public_pem"]):
        assert load_public_key(text).public_bytes(Encoding.Raw, PublicFormat.Raw) == raw
    assert (
        load_public_key(base64.b64encode(raw).decode()).public_bytes(Encoding.Raw, PublicFormat.Raw)
        == raw
    )
    rsa = (
        generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for bad, says in (
        (ED["public_hex"][:-2], "32 bytes"),
        ("not a key at all", "not PEM"),
        (rsa, "not an Ed25519"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PEM"),
    ):
        with pytest.raises(ValueError, match=says):
            load_public_key(bad)


def config(state_dir: Path, orders: str) -> str:
    return (
        f'[site]\nid = "{SITE}"\nowner_bin = "230140000045"\n'
        f'[agent]\nstate_dir = "{state_dir}"\n{orders}'
    )


def test_the_agent_obeys_an_ed25519_issuer_configured_by_public_key_only(tmp_path: Path) -> None:
    pem = tmp_path / "korem.pub"
    pem.write_text(ED["public_pem"])
    for orders in (
        f'[quota.orders.public_keys]\nkorem = "{ED["public_hex"]}"\n',
        f'[quota.orders.public_keys]\nkorem = {{ file = "{pem}" }}\n',
    ):
        state = tmp_path / str(len(orders))
        state.mkdir()
        job = QuotaJob(parse_config(config(state, orders)), SiteState(), state)
        job.offer_order(CASES[0]["order"], "test", NOW)
        assert limit_kw(job.orders, NOW + timedelta(hours=2))[0] == 5500.0
        # and the tampered one changes nothing
        tampered = next(v for v in CASES if v["name"].startswith("ed25519 tampered"))
        job.offer_order(tampered["order"], "test", NOW)
        assert limit_kw(job.orders, NOW + timedelta(hours=2))[0] == 5500.0


@pytest.mark.parametrize(
    ("orders", "says"),
    [
        ('[quota.orders.public_keys]\nkorem = "abcd"\n', "public key of issuer 'korem'"),
        (
            '[quota.orders.public_keys]\nkorem = { file = "/nonexistent/korem.pub" }\n',
            "korem",
        ),
        (
            f'[quota.orders.public_keys]\nkegoc = "{"ab" * 32}"\n'
            '[quota.orders.issuers]\nkegoc = "kegoc-shared-secret-0123456789"\n',
            "issuer in both issuers and public_keys: kegoc",
        ),
    ],
)
def test_bad_public_key_config_names_the_issuer(tmp_path: Path, orders: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_config(config(tmp_path, orders))


# --- hostile input against an Ed25519 issuer: only OrderError, never a traceback ----------

ED_SEED_ORDER = CASES[0]["order"]


def _refused_or_verified(text: str | bytes) -> None:
    try:
        bounded(verify_order, text, KEYS, now=NOW, site=SITE)
    except OrderError as exc:
        assert exc.reasons


@FUZZ
@given(mutated_text([ED_SEED_ORDER, CASES[2]["order"], CASES[3]["order"]]))
@example(ED_SEED_ORDER.replace('"signature": "', '"signature": "\\ud800'))
@example(ED_SEED_ORDER.replace('"target_mw": 5.5', '"target_mw": 1' + "0" * 400))
@example(ED_SEED_ORDER.replace('"target_mw": 5.5', '"target_mw": ' + "[" * 900 + "]" * 900))
def test_hostile_orders_for_an_ed25519_issuer(text: str) -> None:
    _refused_or_verified(text)


@FUZZ
@given(st.text(max_size=200), st.text(alphabet="0123456789abcdefABCDEF \n", max_size=140))
def test_any_signature_text_is_a_refusal_not_a_crash(garbage: str, hexish: str) -> None:
    doc = json.loads(ED_SEED_ORDER)
    for sig in (garbage, hexish):
        _refused_or_verified(json.dumps({**doc, "signature": sig}))


@FUZZ
@given(st.text(max_size=120))
def test_load_public_key_raises_only_value_error(text: str) -> None:
    try:
        key = load_public_key(text)
    except ValueError as exc:
        assert str(exc)  # the config error quotes it: never an empty message
    else:
        assert len(key.public_bytes(Encoding.Raw, PublicFormat.Raw)) == 32
