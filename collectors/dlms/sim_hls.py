"""The meter side of high-level security with GMAC (HLS-GMAC, DLMS security suite 0) for the
DLMS meter simulator, on dlms-cosem's own security primitives (AES-GCM, GMAC).

What a meter does: the AARQ's ciphered user information (global-cipher initiate request) is
deciphered with the global keys and the client's system title — a wrong key fails the tag and
the association is refused; the meter answers with its own system title and a challenge
(StoC); the client proves the keys with ``reply_to_HLS`` (action 1 of the current association,
0.0.40.0.0.255): SC ‖ IC ‖ GMAC(SC ‖ AK ‖ StoC) under its system title; the meter checks it and
proves itself the same way on the client's challenge (CtoS). Every APDU after that travels in
general-glo-ciphering. A client invocation counter not above the last one the meter accepted is
a replay and is refused — as a field meter does, so kuat must carry its counter across sessions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dlms_cosem import dlms_data as dd
from dlms_cosem import enumerations, security
from dlms_cosem.exceptions import DecryptionError
from dlms_cosem.protocol import acse, xdlms

__all__ = ["HlsMeter", "HlsSession"]

_SC = security.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
_SC_AUTH = security.SecurityControlField(security_suite=0, authenticated=True, encrypted=False)
_ASSOCIATION_LN = (0, 0, 40, 0, 0, 255)


def _length(n: int) -> bytes:
    """A-XDR length: one byte below 128, else 0x81/0x82 and the length."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


@dataclass
class HlsSession:
    """One association's security state."""

    client_title: bytes
    ctos: bytes  # the client's challenge
    stoc: bytes = field(default_factory=lambda: os.urandom(16))  # the meter's challenge
    proven: bool = False  # the client has answered the challenge


class HlsMeter:
    def __init__(self, encryption_key: bytes, authentication_key: bytes, title: bytes) -> None:
        self.ek = encryption_key
        self.ak = authentication_key
        self.title = title
        self.invocation_counter = 0  # the meter's own, for what it sends
        #: the last client invocation counter accepted (the meter's 0.0.43.1.0.255)
        self.client_counter = -1
        self.refusals: list[str] = []

    def _accept_counter(self, ic: int) -> bool:
        if ic <= self.client_counter:
            self.refusals.append(f"replayed invocation counter {ic}")
            return False
        self.client_counter = ic
        return True

    def _cipher(self, plain: bytes) -> tuple[int, bytes]:
        self.invocation_counter += 1
        ic = self.invocation_counter
        text = security.encrypt(_SC, self.title, ic, self.ek, plain, self.ak)
        return ic, text

    def associate(
        self, aarq: acse.ApplicationAssociationRequest
    ) -> tuple[bytes, HlsSession | None]:
        """The AARE for an HLS-GMAC AARQ and the session it opens (None: refused)."""
        content = aarq.user_information.content if aarq.user_information else None
        refused = (
            acse.ApplicationAssociationResponse(
                result=enumerations.AssociationResult.REJECTED_PERMANENT,
                result_source_diagnostics=enumerations.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED,
            ).to_bytes(),
            None,
        )
        if (
            aarq.authentication != enumerations.AuthenticationMechanism.HLS_GMAC
            or not isinstance(content, xdlms.GlobalCipherInitiateRequest)
            or aarq.system_title is None
            or not aarq.authentication_value
        ):
            self.refusals.append("not an HLS-GMAC ciphered association request")
            return refused
        try:
            plain = security.decrypt(
                content.security_control,
                aarq.system_title,
                content.invocation_counter,
                self.ek,
                content.ciphered_text,
                self.ak,
            )
        except (DecryptionError, ValueError):
            self.refusals.append("association request does not decipher (wrong keys)")
            return refused
        if not self._accept_counter(content.invocation_counter):
            return refused
        request = xdlms.InitiateRequest.from_bytes(plain)
        response = xdlms.InitiateResponse(
            negotiated_conformance=request.proposed_conformance,
            server_max_receive_pdu_size=1024,
        ).to_bytes()
        ic, text = self._cipher(response)
        session = HlsSession(aarq.system_title, bytes(aarq.authentication_value))
        aare = acse.ApplicationAssociationResponse(
            result=enumerations.AssociationResult.ACCEPTED,
            result_source_diagnostics=enumerations.AcseServiceUserDiagnostics.AUTHENTICATION_REQUIRED,
            ciphered=True,
            system_title=self.title,
            authentication=enumerations.AuthenticationMechanism.HLS_GMAC,
            authentication_value=session.stoc,
            user_information=acse.UserInformation(
                content=xdlms.GlobalCipherInitiateResponse(_SC, ic, text)
            ),
        )
        return aare.to_bytes(), session

    def unwrap(self, apdu: bytes, session: HlsSession) -> bytes | None:
        """The plain APDU inside a general-glo-ciphering one; None when it does not decipher
        or replays a counter."""
        try:
            ggc = xdlms.GeneralGlobalCipher.from_bytes(apdu)
            plain = security.decrypt(
                ggc.security_control,
                session.client_title,
                ggc.invocation_counter,
                self.ek,
                ggc.ciphered_text,
                self.ak,
            )
        except (DecryptionError, ValueError, IndexError):
            self.refusals.append("request does not decipher")
            return None
        if not self._accept_counter(ggc.invocation_counter):
            return None
        return bytes(plain)

    def wrap(self, plain: bytes) -> bytes:
        """general-glo-ciphering of an answer (encoded here: dlms-cosem's own encoder writes
        a one-byte length, wrong above 127 bytes)."""
        ic, text = self._cipher(plain)
        content = _SC.to_bytes() + ic.to_bytes(4, "big") + text
        return (
            bytes([xdlms.GeneralGlobalCipher.TAG, len(self.title)])
            + self.title
            + _length(len(content))
            + content
        )

    def reply_to_hls(self, request: xdlms.ActionRequestNormal, session: HlsSession) -> bytes:
        """The answer to the client's ``reply_to_HLS``: the meter's own proof when the client's
        checks out, else a refusal."""
        m = request.cosem_method
        target = (m.instance.a, m.instance.b, m.instance.c, m.instance.d, m.instance.e)
        denied = xdlms.ActionResponseNormal(
            status=enumerations.ActionResultStatus.READ_WRITE_DENIED,
            invoke_id_and_priority=request.invoke_id_and_priority,
        ).to_bytes()
        if target != _ASSOCIATION_LN[:5] or m.method != 1 or not request.data:
            return denied
        # the data is an octet string: 0x09, its length, SC ‖ IC ‖ tag
        proof = bytes(request.data)[2:]
        if len(proof) != 17:
            return denied
        ic = int.from_bytes(proof[1:5], "big")
        expected = security.gmac(_SC_AUTH, session.client_title, ic, self.ek, self.ak, session.stoc)
        if proof[5:] != expected:
            self.refusals.append("reply_to_HLS does not check out")
            return denied
        session.proven = True
        self.invocation_counter += 1
        mine = self.invocation_counter
        answer = (
            _SC_AUTH.to_bytes()
            + mine.to_bytes(4, "big")
            + security.gmac(_SC_AUTH, self.title, mine, self.ek, self.ak, session.ctos)
        )
        return xdlms.ActionResponseNormalWithData(
            status=enumerations.ActionResultStatus.SUCCESS,
            data=dd.OctetStringData(answer).to_bytes(),
            invoke_id_and_priority=request.invoke_id_and_priority,
        ).to_bytes()
