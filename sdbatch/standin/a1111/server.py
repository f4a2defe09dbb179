"""HTTP plumbing: a threading stdlib server, one handler thread per connection (keep-alive).

Answers are compact JSON like starlette's JSONResponse, gzipped as the webui's GZipMiddleware
does it. The server tracks its open connections (`standin.httpbase`, shared with the ComfyUI
stand-in) so `stop()` can cut idle keep-alive and hung ones instead of waiting for clients.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import struct
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sdbatch.standin.a1111 import routes
from sdbatch.standin.a1111.errors import (
    ApiError,
    Dropped,
    method_not_allowed,
    not_found,
    webui_exception,
)
from sdbatch.standin.a1111.host import Host
from sdbatch.standin.a1111.records import LoggedRequest
from sdbatch.standin.a1111.tamper import RawAnswer, route_answer
from sdbatch.standin.httpbase import TrackedHandler, TrackingServer

log = logging.getLogger("sdbatch.standin.a1111")

# The webui wraps its app in starlette's GZipMiddleware(minimum_size=1000) at starlette's
# default compresslevel 9, so a client that accepts gzip gets every answer of 1000 bytes or more
# compressed, error bodies included; the client's cost of un-gzipping shows only if we do it too.
GZIP_MINIMUM_SIZE = 1000
GZIP_LEVEL = 9


def gzip_wanted(accept_encoding: str | None, size: int) -> bool:
    """Whether the webui gzips a `size`-byte answer; starlette tests for the substring "gzip",
    so `identity` (or no header at all) gets the body as it is."""
    return size >= GZIP_MINIMUM_SIZE and "gzip" in (accept_encoding or "")


class MockHTTPServer(TrackingServer):
    def __init__(self, address: tuple[str, int], webui: Host) -> None:
        super().__init__(address, Handler)
        self.webui = webui


class Handler(TrackedHandler):
    server_version = "uvicorn"
    server: MockHTTPServer

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        webui = self.server.webui
        started = webui.clock()
        parts = urlsplit(self.path)
        raw = self._read_body()
        request = routes.Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            raw=raw,
            content_type=self.headers.get("content-type"),
            authorization=self.headers.get("authorization"),
            headers=dict(self.headers.items()),
        )
        outcome = routes.Outcome()
        headers: dict[str, str] = {}
        status: int | None
        try:
            status, payload = 200, self._dispatch(webui, request, outcome)
            if isinstance(payload, RawAnswer):  # a tamper or a fixed answer (tamper.py)
                status = payload.status
        except ApiError as exc:
            status, payload, headers = self._error(webui, exc)
            outcome.fault = outcome.fault or exc.fault
        except Dropped:
            status, payload = None, None
        except Exception as exc:  # what the webui's exception handler turns into a 500
            log.exception("stand-in webui: %s %s failed", self.command, parts.path)
            status, payload, headers = self._error(
                webui, webui_exception(type(exc).__name__, str(exc))
            )
        # Logged before answering: once a client has its answer, the log already shows it.
        webui.recorder.request(
            LoggedRequest(
                method=self.command,
                path=parts.path,
                query=parts.query,
                body=_json_or_none(raw),
                status=status,
                time=started,
                seeds=outcome.seeds,
                images=outcome.images,
                fault=outcome.fault,
            )
        )
        if status is None:
            self._reset()
        else:
            self._send(status, payload, webui.clock() - started, headers)

    @staticmethod
    def _error(webui: Host, exc: ApiError) -> tuple[int, Any, dict[str, str]]:
        payload, headers = webui.behaviour.errors.render(exc)
        return exc.status, payload, headers

    def _dispatch(self, webui: Host, request: routes.Request, out: routes.Outcome) -> Any:
        fixed = route_answer(webui.faults.settings.route_answers, request.path)
        if fixed is not None:
            out.fault = "route_answer"
            return fixed
        methods = webui.routes.get(request.path)
        if methods is None:
            raise not_found()
        handler = methods.get(request.method)
        if handler is None:
            raise method_not_allowed()
        # txt2img checks auth itself, after decoding the body, as FastAPI orders it.
        if request.path.startswith(routes.SDAPI) and handler is not routes.txt2img:
            routes.check_auth(webui, request.authorization)
        return handler(webui, request, out)

    def _send(self, status: int, payload: Any, elapsed: float, headers: Mapping[str, str]) -> None:
        if isinstance(payload, RawAnswer):
            self._send_raw(payload)
            return
        if payload is routes.NO_CONTENT:
            status, data = 204, b""
        else:
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        compressed = gzip_wanted(self.headers.get("accept-encoding"), len(data))
        if compressed:
            data = gzip.compress(data, compresslevel=GZIP_LEVEL)
        try:
            self.send_response(status)
            if status != 204:  # a 204 carries neither a body nor its headers
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
            if compressed:
                self.send_header("content-encoding", "gzip")
                self.send_header("vary", "Accept-Encoding")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("x-process-time", f"{elapsed:.4f}")
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (e.g. its timeout fired): nothing to tell it
            self.close_connection = True

    def _send_raw(self, answer: RawAnswer) -> None:
        """Bytes as they are; a Content-Length the body does not meet ends the connection."""
        length = len(answer.data) if answer.declared_length is None else answer.declared_length
        try:
            self.send_response(answer.status)
            self.send_header("content-type", answer.content_type)
            self.send_header("content-length", str(length))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.data)
            self.wfile.flush()
        except OSError:
            pass  # the client went away
        if length != len(answer.data):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        """Close with RST and no answer; the client sees a connection reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
