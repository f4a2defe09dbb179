"""The WebSocket of one worker: ComfyUI's events for sdbatch's own client_id.

Entry point: `Listener(ws_url).ensure()` before each post, then `wait(prompt_id, seconds)` and
`step()`. ComfyUI sends a prompt's events only to the socket of the client_id it was posted
with, and a second socket with that id silently takes them over: so each worker has one id and
one socket, opened BEFORE its first post, read by one thread. The socket is only a fast path:
a finished prompt wakes its waiter at once, but the truth is `/history` (history.py), and a
lost socket just means polling until the next `ensure()` reconnects it. It never hangs a run:
every wait is bounded by its caller's timeout.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger("sdbatch")

OPEN_TIMEOUT = 10.0
FINISHED = ("execution_success", "execution_error", "execution_interrupted")


class Listener:
    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._done: dict[str, threading.Event] = {}
        self._progress: dict[str, tuple[int, int]] = {}
        self._running: str | None = None

    @property
    def alive(self) -> bool:
        return self._ws is not None

    def ensure(self) -> None:
        """Connect (again) if the socket is down; a failure only leaves polling to do."""
        with self._lock:
            if self._ws is not None:
                return
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True, name="comfy-ws").start()
        ready.wait(OPEN_TIMEOUT + 1.0)  # bounded: the thread's own open times out first

    def _run(self, ready: threading.Event) -> None:
        try:
            # The context manager is the library's supported way to hold a sync connection.
            with connect(self.ws_url, open_timeout=OPEN_TIMEOUT, close_timeout=1.0) as ws:
                with self._lock:
                    self._ws = ws
                ready.set()
                self._read(ws)
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.warning("no WebSocket to %s (%s); polling /history instead", self.ws_url, exc)
        finally:
            ready.set()

    def expect(self, prompt_id: str) -> None:
        """Before posting `prompt_id`, so that an event arriving early is not lost."""
        with self._lock:
            self._done.setdefault(prompt_id, threading.Event())

    def wait(self, prompt_id: str, seconds: float) -> bool:
        """Block until the socket says `prompt_id` finished, or `seconds` passed."""
        with self._lock:
            event = self._done.setdefault(prompt_id, threading.Event())
        woke = event.wait(seconds)
        event.clear()  # a wake-up is a reason to ask /history, once; not a state
        return woke

    def forget(self, prompt_id: str) -> None:
        with self._lock:
            self._done.pop(prompt_id, None)
            self._progress.pop(prompt_id, None)

    def step(self) -> str | None:
        with self._lock:
            value = self._progress.get(self._running) if self._running else None
        return f"step {value[0]}/{value[1]}" if value else None

    def close(self) -> None:
        with self._lock:
            ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _read(self, ws: ClientConnection) -> None:
        try:
            for message in ws:
                if isinstance(message, str):  # binary frames are previews: not ours to keep
                    self._handle(message)
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.info("the WebSocket to %s closed (%s)", self.ws_url, exc)
        finally:
            with self._lock:
                if self._ws is ws:
                    self._ws = None
                # Wake every waiter: each one asks /history whether its prompt is done.
                for event in self._done.values():
                    event.set()

    def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind, data = message["type"], message["data"]
            prompt_id = data.get("prompt_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not isinstance(prompt_id, str):
            return
        with self._lock:
            if kind == "execution_start":
                self._running = prompt_id
            elif kind == "progress":
                self._progress[prompt_id] = (_int(data.get("value")), _int(data.get("max")))
            elif kind in FINISHED or (kind == "executing" and data.get("node") is None):
                self._done.setdefault(prompt_id, threading.Event()).set()
                if self._running == prompt_id:
                    self._running = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
