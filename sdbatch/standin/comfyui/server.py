"""HTTP plumbing for the stand-in ComfyUI: a threading stdlib server, keep-alive, and the
WebSocket upgrade on `/ws` handed to ws.py on the same port (the real server has one port).

Every request is logged (records.py) before its answer goes out, so a client that has its
answer finds the request in the log. `stop()` shuts every open connection, WebSockets included,
so no handler thread outlives the server.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import parse_qs, urlsplit

from sdbatch.standin.comfyui import control, routes
from sdbatch.standin.comfyui.host import Host
from sdbatch.standin.comfyui.records import LoggedRequest
from sdbatch.standin.comfyui.ws import Socket
from sdbatch.standin.httpbase import TrackedHandler, TrackingServer

log = logging.getLogger("sdbatch.standin.comfyui")


class ComfyHTTPServer(TrackingServer):
    def __init__(self, address: tuple[str, int], comfy: Host) -> None:
        super().__init__(address, Handler)
        self.comfy = comfy


class Handler(TrackedHandler):
    server_version = "Python/3 aiohttp/3 (sdbatch stand-in)"
    server: ComfyHTTPServer

    def _handle(self) -> None:
        comfy = self.server.comfy
        parts = urlsplit(self.path)
        path = parts.path.removeprefix("/api") if parts.path.startswith("/api/") else parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/ws" and self.command == "GET":
            self._websocket(comfy, query)
            return
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        request = routes.Request(self.command, path, query, raw)
        handler = routes.find(self.command, path) or control.ROUTES.get((self.command, path))
        try:
            answer = (
                handler(comfy, request)
                if handler
                else routes.Answer(404, b"404: Not Found", "text/plain; charset=utf-8")
            )
        except Exception:  # what aiohttp turns into its 500 page
            log.exception("stand-in ComfyUI: %s %s failed", self.command, path)
            answer = routes.server_error()
        comfy.recorder.request(
            LoggedRequest(self.command, path, parts.query, raw, answer.status, comfy.clock())
        )
        self._send(answer)

    def _send(self, answer: routes.Answer) -> None:
        try:
            self.send_response(answer.status)
            if answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client went away
            self.close_connection = True

    def _websocket(self, comfy: Host, query: dict[str, str]) -> None:
        self.close_connection = True
        sid = query.get("clientId") or uuid.uuid4().hex

        def log_upgrade(status: int) -> None:  # before the answer, as every request is
            comfy.recorder.request(
                LoggedRequest("GET", "/ws", urlsplit(self.path).query, b"", status, comfy.clock())
            )

        ws = Socket.accept(
            self.connection, self.rfile, self.requestline, list(self.headers.items()), log_upgrade
        )
        if ws is None:
            return
        comfy.attach(sid, ws)
        try:
            ws.serve()
        finally:
            comfy.hub.disconnect(sid)
