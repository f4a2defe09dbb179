"""The WebSocket side of the stand-in, on the HTTP server's own port as on the real one.

The framing and the opening handshake are the `websockets` library's Sans-I/O `ServerProtocol`;
this module only moves bytes between it and the socket the stdlib HTTP handler hands over.

`Hub` routes messages the way ComfyUI's socket table does (OBSERVED and tests/data/real-comfyui):
one socket per clientId; a second socket with the same id replaces the first, which silently
gets nothing more; and when any socket with that id closes, the id is dropped, so the newer
socket is orphaned too (recorded: `steal_then_first_closes`). A message for no client goes to
every socket.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

READ_SIZE = 65536


class Socket:
    """One accepted WebSocket. `send` only queues: a writer thread sends in order, so a slow
    client never blocks the worker or the queue (aiohttp buffers likewise)."""

    def __init__(
        self, conn: socket.socket, reader: io.BufferedIOBase, protocol: ServerProtocol
    ) -> None:
        self._conn, self._reader, self._protocol = conn, reader, protocol
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.received: list[Any] = []  # text messages from the client, decoded
        self._writer = threading.Thread(target=self._write, name="mockcomfy-ws-writer", daemon=True)

    @classmethod
    def accept(
        cls,
        conn: socket.socket,
        reader: io.BufferedIOBase,
        request_line: str,
        headers: list[tuple[str, str]],
        answering: Callable[[int], None] = lambda status: None,
    ) -> Socket | None:
        """Answer the upgrade request; None when the library refused it (its answer is sent).
        The stdlib server has parsed the request already; the library is given it again, as
        bytes, so that its parser moves on to frames. `answering(status)` runs before the
        answer goes out (the request log: a client that has its socket finds it logged)."""
        protocol = ServerProtocol()
        head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        protocol.receive_data(head.encode("latin-1"))
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:
            answering(400)
            return None
        response = protocol.accept(request)
        answering(response.status_code)
        protocol.send_response(response)
        ws = cls(conn, reader, protocol)
        with ws._lock:
            ws._flush()
        if protocol.state is not State.OPEN:
            return None
        ws._writer.start()
        return ws

    def _flush(self) -> bool:
        try:
            for data in self._protocol.data_to_send():
                if data:
                    self._conn.sendall(data)
                else:  # the library asks to close our side after the closing handshake
                    self._conn.shutdown(socket.SHUT_WR)
        except OSError:
            return False
        return True

    def send(self, message: dict[str, Any]) -> None:
        if self._writer.is_alive():  # a closed socket drops what is sent to it
            self._outbox.put(message)

    def _write(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            with self._lock:
                if self._protocol.state is not State.OPEN:
                    return
                self._protocol.send_text(json.dumps(message).encode("utf-8"))
                if not self._flush():
                    return

    def serve(self) -> None:
        """Read until the client or the server closes; pings are answered by the library."""
        try:
            while True:
                try:
                    data = self._reader.read1(READ_SIZE)
                except (OSError, ValueError):
                    data = b""
                with self._lock:
                    if data:
                        self._protocol.receive_data(data)
                    else:
                        self._protocol.receive_eof()
                    for event in self._protocol.events_received():
                        if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                            with contextlib.suppress(ValueError):
                                self.received.append(json.loads(bytes(event.data)))
                    self._flush()
                    closed = self._protocol.state is State.CLOSED or self._protocol.close_expected()
                if not data or closed:
                    return
        finally:
            self._outbox.put(None)

    def close(self) -> None:
        """Close from the server side (a lost connection, or the server stopping)."""
        self._outbox.put(None)
        with self._lock:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(1001)
                self._flush()
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)


class Hub:
    """clientId -> socket, with the real server's takeover and drop rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[str, Socket] = {}

    def connect(self, sid: str, ws: Socket) -> None:
        with self._lock:
            self._sockets[sid] = ws

    def disconnect(self, sid: str) -> None:
        with self._lock:
            self._sockets.pop(sid, None)

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """To `sid`'s socket, or to every socket when `sid` is None."""
        with self._lock:
            targets = list(self._sockets.values()) if sid is None else [self._sockets.get(sid)]
        for ws in targets:
            if ws is not None:
                ws.send({"type": event, "data": data})

    def client_ids(self) -> list[str]:
        with self._lock:
            return list(self._sockets)

    def close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets.values())
            self._sockets.clear()
        for ws in sockets:
            ws.close()
