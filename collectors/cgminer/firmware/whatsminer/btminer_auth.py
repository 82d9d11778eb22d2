"""Signing and encryption of Whatsminer (MicroBT btminer) write commands, both API generations.

Pure functions, shared by the control client (control.py) and the simulator (sim.py), so both
sides of the handshake are the same code and a test can check it against known vectors.

API v2 (TCP 4028; "WhatsMiner API V2.0.x", sections "API ciphertext" and "get_token"):

1. ``{"cmd": "get_token"}`` -> ``Msg: {"time", "salt", "newsalt"}`` (Code 134).
2. key  = the md5-crypt hash body of the admin password with ``salt``
   (``openssl passwd -1 -salt $salt $password``, the 22 characters after ``$1$salt$``).
3. sign = the md5-crypt hash body of ``key + time`` with ``newsalt``.
4. The command JSON gets ``"token": sign``; it is zero-padded to 16 bytes, AES-256-ECB
   encrypted with ``sha256(key)`` as the key, base64-encoded and sent as
   ``{"enc": 1, "data": <base64>}``. The miner answers ``{"enc": <base64>}`` under the same key,
   or a plain error (135 "check token error" and the like) when it could not check the token.

API v3 (TCP 4433; MicroBT's API v3 documentation, "Token Generation"): a ``set.*`` request
carries ``account``, ``ts`` (Unix time) and ``token`` = the first 8 characters of
base64(sha256(cmd + password + salt + ts)), the salt coming from ``get.device.info``.

None of these functions logs; none puts a password into an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kuat.collectors.errors import KuatError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    from cryptography.hazmat.primitives.padding import PKCS7

# cryptography and passlib (~10 MB of an agent's RSS) are imported by the functions that
# sign or encrypt a write: an agent that only polls its Whatsminers never loads them.

_BLOCK = 16
# md5-crypt salts: at most 8 characters of this alphabet (passlib refuses anything else)
_SALT_CHARS = frozenset("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# the accounts API v3 accepts for set.* (its documentation: "admin" is no longer supported)
V3_ACCOUNTS = ("super", "user1", "user2", "user3")
V3_TOKEN_CHARS = 8


class AuthError(KuatError, ValueError):
    """The miner's token or reply cannot be used (bad salt, undecryptable reply)."""


@dataclass(frozen=True, slots=True)
class V2Token:
    """What ``get_token`` returns: the salt of the admin password, a fresh salt, a time."""

    time: str
    salt: str
    newsalt: str

    @classmethod
    def from_reply(cls, body: dict[str, Any]) -> V2Token:
        msg = body.get("Msg")
        if not isinstance(msg, dict):
            raise AuthError(f"get_token gave no token ({msg!r})")
        values = [msg.get(k) for k in ("time", "salt", "newsalt")]
        if not all(isinstance(v, str | int) and str(v) for v in values):
            raise AuthError("get_token reply lacks time, salt or newsalt")
        return cls(*(str(v) for v in values))


@dataclass(frozen=True, slots=True)
class V2Session:
    """The two secrets one token gives: ``key`` encrypts, ``sign`` goes into the command."""

    key: str
    sign: str


def md5_crypt_body(secret: str, salt: str) -> str:
    """The hash part of ``$1$<salt>$<hash>``, as ``openssl passwd -1 -salt`` makes it."""
    if not salt or len(salt) > 8 or not set(salt) <= _SALT_CHARS:
        raise AuthError(f"not an md5-crypt salt: {salt!r}")
    from passlib.hash import md5_crypt

    return md5_crypt.using(salt=salt).hash(secret).rsplit("$", 1)[1]


def v2_session(password: str, token: V2Token) -> V2Session:
    key = md5_crypt_body(password, token.salt)
    return V2Session(key=key, sign=md5_crypt_body(key + token.time, token.newsalt))


def _aes_ecb(key: bytes) -> Cipher[modes.ECB]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB())


def _pkcs7() -> PKCS7:
    from cryptography.hazmat.primitives.padding import PKCS7

    return PKCS7(128)


def _cipher(key: str) -> Cipher[modes.ECB]:
    # the documented AES key is sha256 of the md5-crypt body, the raw 32 bytes
    return _aes_ecb(hashlib.sha256(key.encode()).digest())


def v2_encrypt(key: str, plaintext: bytes) -> str:
    """Zero-pad to the block size (not PKCS#7: btminer strips NULs), encrypt, base64."""
    padded = plaintext + b"\x00" * (-len(plaintext) % _BLOCK)
    enc = _cipher(key).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")


def v2_decrypt(key: str, data: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise AuthError("encrypted text is not base64") from None
    if len(raw) % _BLOCK:
        raise AuthError(f"encrypted text of {len(raw)} bytes is not whole AES blocks")
    dec = _cipher(key).decryptor()
    return (dec.update(raw) + dec.finalize()).rstrip(b"\x00")


def v2_request(session: V2Session, cmd: str, **params: str) -> bytes:
    """The wire bytes of one encrypted write command."""
    body = {"cmd": cmd, "token": session.sign, **params}
    plain = json.dumps(body, separators=(",", ":")).encode()
    data = v2_encrypt(session.key, plain)
    return json.dumps({"enc": 1, "data": data}, separators=(",", ":")).encode()


def v2_open_reply(session: V2Session, body: dict[str, Any]) -> dict[str, Any]:
    """An ``{"enc": ...}`` reply decrypted; a plain reply (an error) as it came."""
    data = body.get("enc")
    if not isinstance(data, str):
        return body
    try:
        out = json.loads(v2_decrypt(session.key, data))
    except (ValueError, UnicodeDecodeError):
        raise AuthError("the miner's encrypted reply does not decrypt to JSON") from None
    if not isinstance(out, dict):
        raise AuthError("the miner's encrypted reply is not a JSON object")
    return out


def v3_digest(cmd: str, password: str, salt: str, ts: int) -> bytes:
    """sha256(cmd + password + salt + ts): the token's source and the key of an encrypted param."""
    return hashlib.sha256(f"{cmd}{password}{salt}{ts}".encode()).digest()


def v3_token(cmd: str, password: str, salt: str, ts: int) -> str:
    return base64.b64encode(v3_digest(cmd, password, salt, ts)).decode("ascii")[:V3_TOKEN_CHARS]


# API v3 commands whose param carries secrets (pool passwords) and goes encrypted: compact JSON,
# PKCS#7-padded, AES-256-ECB under the raw v3_digest, base64 (MicroBT's API v3 document,
# set.miner.pools; as public v3 clients send it).
V3_ENCRYPTED = frozenset({"set.miner.pools"})


def v3_encrypt_param(key: bytes, param: Any) -> str:
    body = json.dumps(param, separators=(",", ":")).encode()
    padder = _pkcs7().padder()
    enc = _aes_ecb(key).encryptor()
    padded = padder.update(body) + padder.finalize()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")


def v3_decrypt_param(key: bytes, data: str) -> Any:
    """What ``v3_encrypt_param`` made, back (the simulator's side); AuthError if it is not."""
    try:
        raw = base64.b64decode(data, validate=True)
        dec = _aes_ecb(key).decryptor()
        unpadder = _pkcs7().unpadder()
        plain = unpadder.update(dec.update(raw) + dec.finalize()) + unpadder.finalize()
        return json.loads(plain)
    except (binascii.Error, ValueError):
        raise AuthError("the encrypted param does not decrypt to JSON") from None


def v3_set_request(
    cmd: str, param: Any, *, account: str, password: str, salt: str, ts: int
) -> dict[str, Any]:
    """The JSON object of one signed ``set.*`` command (``param`` None: none sent); the param
    of a V3_ENCRYPTED command goes encrypted."""
    req: dict[str, Any] = {
        "cmd": cmd,
        "ts": ts,
        "token": v3_token(cmd, password, salt, ts),
        "account": account,
    }
    if param is not None and cmd in V3_ENCRYPTED:
        param = v3_encrypt_param(v3_digest(cmd, password, salt, ts), param)
    if param is not None:
        req["param"] = param
    return req
