"""pysnmp's engine for what kuat's own v2c client does not do: SNMPv3 (every request) and SET.

The only module of kuat that imports pysnmp. ``kuat.collectors.snmp.collector`` imports it on
first use, so a farm whose PDUs all speak v2c never loads pysnmp (and pysmi, requests, jinja2
and lark behind it): a few hundred milliseconds of CPU at every start of ``kuat``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    bulk_walk_cmd,
    get_cmd,
    set_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as _auth
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import builder, view

from kuat.collectors.snmp import ber
from kuat.collectors.snmp.collector import (
    AUTH_PROTOCOLS,
    MAX_REPETITIONS,
    PRIV_PROTOCOLS,
    PollFailed,
    Raw,
    SnmpAuth,
    _AgentError,
    _Refused,
    _Session,
)

__all__ = ["EngineSession", "new_engine", "udp_target"]

_AUTH: dict[str, Any] = {
    "MD5": _auth.USM_AUTH_HMAC96_MD5,
    "SHA": _auth.USM_AUTH_HMAC96_SHA,
    "SHA224": _auth.USM_AUTH_HMAC128_SHA224,
    "SHA256": _auth.USM_AUTH_HMAC192_SHA256,
    "SHA384": _auth.USM_AUTH_HMAC256_SHA384,
    "SHA512": _auth.USM_AUTH_HMAC384_SHA512,
}
_PRIV: dict[str, Any] = {
    "DES": _auth.USM_PRIV_CBC56_DES,
    "3DES": _auth.USM_PRIV_CBC168_3DES,
    "AES": _auth.USM_PRIV_CFB128_AES,
    "AES128": _auth.USM_PRIV_CFB128_AES,
    "AES192": _auth.USM_PRIV_CFB192_AES,
    "AES256": _auth.USM_PRIV_CFB256_AES,
    "AES192BLMT": _auth.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256BLMT": _auth.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
# the names SnmpAuth.problem accepts are exactly the ones mapped here
assert set(_AUTH) == AUTH_PROTOCOLS and set(_PRIV) == PRIV_PROTOCOLS


def auth_data(auth: SnmpAuth) -> CommunityData | UsmUserData:
    if auth.v3_user:
        return UsmUserData(
            auth.v3_user,
            authKey=auth.v3_auth_key,
            privKey=auth.v3_priv_key,
            authProtocol=_AUTH[auth.v3_auth_proto.upper()],
            privProtocol=_PRIV[auth.v3_priv_proto.upper()],
        )
    return CommunityData(auth.community, mpModel=1)


def context(auth: SnmpAuth) -> ContextData:
    return ContextData(contextName=auth.v3_context) if auth.v3_user else ContextData()


class _NoMibCompiler:
    """Stands in for pysmi: numeric OIDs never need a MIB compiled.

    Left to itself, pysnmp builds pysmi's MIB parser for every new engine on the first
    request (0.1-0.7 s of CPU), even with ``lookupMib=False``.
    """

    def compile(self, *names: str, **options: Any) -> dict[str, str]:
        return {}


@functools.cache
def _mib_view() -> view.MibViewController:
    """One MIB view for all engines: it is plain data, built once per process."""
    mib_builder = builder.MibBuilder()
    mibs_dir = str(next(iter(mib_builder.get_mib_sources())).full_path())
    mib_builder.set_mib_compiler(_NoMibCompiler(), mibs_dir)
    return view.MibViewController(mib_builder)


def new_engine() -> SnmpEngine:
    engine = SnmpEngine()
    engine.cache["mibViewController"] = _mib_view()  # the key pysnmp's hlapi looks up
    return engine


async def udp_target(host: str, port: int, timeout_s: float, retries: int) -> UdpTransportTarget:
    return await UdpTransportTarget.create((host, port), timeout=timeout_s, retries=retries)


def _raw(value: Any) -> Raw:
    """pysnmp value -> int, text or None (for noSuchObject / noSuchInstance / endOfMib)."""
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        return None
    if isinstance(value, rfc1902.OctetString):
        return bytes(value).decode("utf-8", "replace").strip().strip("\x00") or None
    if isinstance(value, rfc1902.ObjectIdentifier):
        return str(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value) or None


_EXCEPTION_TAGS = (
    (rfc1905.NoSuchObject, ber.NO_SUCH_OBJECT),
    (rfc1905.NoSuchInstance, ber.NO_SUCH_INSTANCE),
    (rfc1905.EndOfMibView, ber.END_OF_MIB_VIEW),
    (univ.Null, ber.NULL),
)


def _varbind(var_bind: Any) -> ber.Varbind:
    """pysnmp's (name, value) -> ber.py's (name octets, tag, value) for ``walk_columns``: the
    tag says only whether it is an exception; an OCTET STRING stays bytes, as ber.py's."""
    name, value = var_bind
    oid = ber.encode_oid(str(name))
    for kind, tag in _EXCEPTION_TAGS:
        if isinstance(value, kind):
            return oid, tag, None
    if isinstance(value, rfc1902.OctetString):
        return oid, ber.OCTET_STRING, bytes(value)
    return oid, ber.INTEGER, _raw(value)


@dataclass
class EngineSession(_Session):
    """Through pysnmp's engine: SNMPv3 for everything, and every SET."""

    engine: SnmpEngine
    auth: SnmpAuth
    target: UdpTransportTarget
    what: str

    async def get(self, oids: Iterable[str], purpose: str) -> dict[str, Raw]:
        var_binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        if not var_binds:
            return {}
        err_ind, err_stat, _err_idx, answer = await get_cmd(
            self.engine,
            auth_data(self.auth),
            self.target,
            context(self.auth),
            *var_binds,
            lookupMib=False,
        )
        if err_ind:
            raise PollFailed(f"{purpose}: {err_ind} ({self.what})")
        if err_stat:
            raise _AgentError(f"{purpose}: agent answered {err_stat.prettyPrint()}")
        return {str(name): _raw(value) for name, value in answer}

    async def set_int(self, oid: str, value: int) -> None:
        err_ind, err_stat, _err_idx, _ = await set_cmd(
            self.engine,
            auth_data(self.auth),
            self.target,
            context(self.auth),
            ObjectType(ObjectIdentity(oid), rfc1902.Integer32(value)),
            lookupMib=False,
        )
        if err_ind:
            raise PollFailed(f"setting {oid}: {err_ind} ({self.what})")
        if err_stat:
            raise _Refused(f"setting {oid} = {value}: agent answered {err_stat.prettyPrint()}")

    async def bulk(
        self, starts: list[bytes], repetitions: int, doing: str, non_repeaters: int = 0
    ) -> ber.Response:
        err_ind, err_stat, err_idx, answer = await bulk_cmd(
            self.engine,
            auth_data(self.auth),
            self.target,
            context(self.auth),
            non_repeaters,
            repetitions,
            *(ObjectType(ObjectIdentity(ber.oid_text(start))) for start in starts),
            lookupMib=False,
        )
        if err_ind:
            raise PollFailed(f"{doing}: {err_ind} ({self.what})")
        return ber.Response(0, b"", int(err_stat), int(err_idx), [_varbind(vb) for vb in answer])

    async def walk(self, column: str) -> dict[str, Raw]:
        """One column through pysnmp's own bulk walk (``PduPoller(per_column_walks=True)``)."""
        prefix = column + "."
        found: dict[str, Raw] = {}
        async for err_ind, err_stat, _idx, var_binds in bulk_walk_cmd(
            self.engine,
            auth_data(self.auth),
            self.target,
            context(self.auth),
            0,
            MAX_REPETITIONS,
            ObjectType(ObjectIdentity(column)),
            lookupMib=False,
            lexicographicMode=False,
        ):
            if err_ind:
                raise PollFailed(f"walking {column}: {err_ind} ({self.what})")
            if err_stat:
                raise PollFailed(f"walking {column}: agent answered {err_stat.prettyPrint()}")
            for name, value in var_binds:
                oid = str(name)
                if oid.startswith(prefix):
                    raw = _raw(value)
                    if raw is not None or isinstance(value, rfc1902.OctetString):
                        found[oid[len(prefix) :]] = raw
        return found
