"""Who may read the dashboard: the Host check against DNS rebinding, and the token.

DNS rebinding: a web page the operator opens elsewhere points its own host name at the
dashboard's address and reads the answers as same-origin. The browser then sends that page's
name as ``Host``, so answering only the names the dashboard is reached by stops it: the listen
address, the loopback names when it listens on loopback, any IP literal when it listens on every
interface (a rebinding page can only ever send a name), and the names in ``[dashboard] hosts``.

The token (``[dashboard] token``, required beyond loopback) is sent as
``Authorization: Bearer <token>`` by scripts and Prometheus; a browser opens ``/?token=<token>``
once, gets a cookie holding a digest of it (not the token) and is sent back to the same address
without the token, so it leaves no trace in the address bar. Nothing here logs the token or
the request line that carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from kuat.agent.config import DashboardSection, is_loopback
from kuat.agent.i18n import Lang, t

COOKIE = "kuat_dashboard"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_name(header: str | None) -> str | None:
    """The name in a Host header without its port ("[::1]:9120" -> "::1"), lower case."""
    if not header:
        return None
    h = header.strip().lower()
    if h.startswith("["):
        inner, sep, _ = h[1:].partition("]")
        return inner if sep else None
    name, _, port = h.rpartition(":") if h.count(":") == 1 else (h, "", "")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


@dataclass(frozen=True, slots=True)
class Guard:
    hosts: frozenset[str]  # names and addresses answered
    any_ip: bool  # listening on every interface: any IP literal is answered
    token: str | None

    @classmethod
    def for_listen(cls, bound: str, section: DashboardSection) -> Guard:
        token = section.token.get() if section.token is not None else None
        return cls.of(bound, section.hosts, token)

    @classmethod
    def of(cls, bound: str, names: Iterable[str] = (), token: str | None = None) -> Guard:
        ip = _ip(bound)
        any_ip = ip is not None and ip.is_unspecified
        hosts = {n.lower() for n in names}
        if not any_ip:
            hosts.add(str(ip) if ip is not None else bound.lower())
        if is_loopback(bound):
            hosts |= {"localhost", "127.0.0.1", "::1"}
        if not is_loopback(bound) and token is None:
            raise ValueError(f"the dashboard on {bound} needs a token: it listens beyond loopback")
        return cls(frozenset(hosts), any_ip, token)

    def host_allowed(self, header: str | None) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.hosts:
            return True
        return self.any_ip and _ip(name) is not None

    def _cookie_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"kuat dashboard session", hashlib.sha256).hexdigest()

    def authorised(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("Authorization", "")
        scheme, _, given = bearer.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie, self._cookie_value())

    def middleware(
        self, lang_of: Callable[[web.Request], Lang]
    ) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            lang = lang_of(request)
            if not self.host_allowed(request.headers.get("Host")):
                return _refuse(403, t("host_refused", lang), lang)
            if self.token is not None and "token" in request.query:
                return self._sign_in(request, lang)
            if not self.authorised(request):
                r = _refuse(401, t("token_needed", lang), lang)
                r.headers["WWW-Authenticate"] = 'Bearer realm="kuat"'
                return r
            return await handler(request)

        return guard

    def _sign_in(self, request: web.Request, lang: Lang) -> web.StreamResponse:
        """``?token=`` given: a cookie if it is right, and back to the address without it."""
        assert self.token is not None
        if not hmac.compare_digest(request.query["token"], self.token):
            return _refuse(401, t("token_wrong", lang), lang)
        query = {k: v for k, v in request.query.items() if k != "token"}
        target = request.rel_url.with_query(query)
        r = web.HTTPSeeOther(str(target))
        r.set_cookie(COOKIE, self._cookie_value(), httponly=True, samesite="Strict", path="/")
        return r


def _refuse(status: int, text: str, lang: Lang) -> web.Response:
    return web.Response(
        status=status,
        text=text + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Language": lang, "Cache-Control": "no-store"},
    )
