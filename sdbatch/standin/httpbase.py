"""The HTTP plumbing both stand-ins share: a threading stdlib server that knows its open
connections, and a keep-alive handler that sends each request to `_handle`.

Entry points: `TrackingServer` (its `serve_in_thread` and `close`) and `TrackedHandler`. Why
the tracking: `close()` must wake every handler blocked on an idle keep-alive read or a hung
answer, so a stopped stand-in leaves no handler thread behind and never waits on a client.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sdbatch.standin")


class TrackingServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the process alive
    block_on_close = False
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (its size limit or deadline hit) is no server
        error worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("stand-in: %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Wake every handler blocked on a keep-alive read by shutting its socket down."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def serve_in_thread(self, name: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        """Stop accepting, cut every open connection, release the port."""
        self.shutdown()
        self.drop_connections()
        self.server_close()


class TrackedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as both real servers do
    server: TrackingServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the client's
        # delayed ACK adds ~40 ms to every keep-alive answer (uvicorn and aiohttp set it too).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        raise NotImplementedError
