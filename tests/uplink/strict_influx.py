"""A strict InfluxDB v2 write endpoint for the status-code paths VictoriaMetrics never takes.

VictoriaMetrics 1.79 answers 204 to every write and silently skips malformed lines, so the
400/413/429/401 handling is exercised against this small real HTTP server instead: it parses
line protocol strictly (InfluxDB's rules), checks the token, limits the body size, and can be
told to answer the next requests with a given status (``fail_next``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_NUM = re.compile(
    r"^(-?\d+i|-?\d+u|[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
    r"|t|T|true|True|TRUE|f|F|false|False|FALSE)$"
)


def _split_unescaped(text: str, sep: str, quotes: bool = True) -> Iterator[str]:
    """Split on ``sep`` outside string values and not preceded by a backslash.

    As in InfluxDB's parser, a quote opens a string only right after ``=`` (a field value);
    elsewhere it is a literal character.
    """
    start, i, quoted = 0, 0, False
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        opens = i > 0 and text[i - 1] == "=" and (i < 2 or text[i - 2] != "\\")
        if quotes and c == '"' and (quoted or opens):
            quoted = not quoted
        elif c == sep and not quoted:
            yield text[start:i]
            start = i + 1
        i += 1
    yield text[start:]


def check_line(line: str) -> str | None:
    """None when ``line`` is valid line protocol, else the reason."""
    # The series key (measurement and tags) ends at the first unescaped space; quotes are
    # literal there and only delimit string values in the fields section.
    series = next(_split_unescaped(line, " ", quotes=False))
    parts = [series, *_split_unescaped(line[len(series) + 1 :], " ")]
    if len(parts) not in (2, 3):
        return f"expected 2 or 3 space-separated sections, got {len(parts)}"
    fields = parts[1]
    if len(parts) == 3 and not re.fullmatch(r"-?\d+", parts[2]):
        return "bad timestamp"
    tags = list(_split_unescaped(series, ",", quotes=False))
    if not tags[0]:
        return "missing measurement"
    for tag in tags[1:]:
        kv = list(_split_unescaped(tag, "=", quotes=False))
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return f"bad tag {tag!r}"
    for field in _split_unescaped(fields, ","):
        kv = list(_split_unescaped(field, "="))
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return f"bad field {field!r}"
        value = kv[1]
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                return f"bad string field {field!r}"
        elif not _NUM.match(value):
            return f"invalid field format {field!r}"
    return None


class StrictInflux:
    def __init__(self, *, token: str | None = None, max_body: int = 10_000_000) -> None:
        self.token = token
        self.max_body = max_body
        self.points: list[str] = []
        self.requests = 0
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(
                self, status: int, body: dict | None = None, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode() if body else b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with owner._lock:
                    owner.requests += 1
                    if owner.fail_next:
                        status, headers = owner.fail_next.pop(0)
                        self._reply(status, {"code": "injected", "message": "injected"}, headers)
                        return
                if not self.path.startswith("/api/v2/write"):
                    self._reply(404, {"code": "not found", "message": self.path})
                    return
                if (
                    owner.token is not None
                    and self.headers.get("Authorization") != f"Token {owner.token}"
                ):
                    self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
                    return
                if length > owner.max_body:
                    self._reply(413, {"code": "request too large", "message": "too large"})
                    return
                lines = [ln for ln in body.decode().split("\n") if ln]
                for ln in lines:
                    reason = check_line(ln)
                    if reason:
                        self._reply(
                            400, {"code": "invalid", "message": f"unable to parse '{ln}': {reason}"}
                        )
                        return
                with owner._lock:
                    owner.points.extend(lines)
                self._reply(204)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StrictInflux:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
