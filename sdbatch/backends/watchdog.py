"""A deadline for the part of a request that `fetch` cannot read itself: the status line and
the headers, which http.client reads whole before requests returns.

Entry points: `WatchedAdapter` (what `session.make_session` mounts) and `watch(deadline)`,
around the call that sends a request. Why: requests' timeout bounds each socket read, so a
server that trickles its headers a byte at a time is never timed out. While `watch` is active
on a thread, each connection of the adapter that waits for an answer on that thread has a timer
that shuts its socket down at the deadline; the blocked read then fails at once, and `fetch`
reports it as too slow.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

_local = threading.local()


@contextlib.contextmanager
def watch(deadline: float) -> Iterator[None]:
    """Answers awaited on this thread must have begun by `deadline` (time.monotonic)."""
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = None


def _awaited(conn: HTTPConnection, getresponse: Callable[[], HTTPResponse]) -> HTTPResponse:
    """`getresponse()`, with a timer cutting `conn`'s socket at this thread's deadline."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return getresponse()

    def cut() -> None:
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    try:
        return getresponse()
    finally:
        timer.cancel()


class _HTTP(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        return _awaited(self, super().getresponse)


class _HTTPS(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        return _awaited(self, super().getresponse)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _HTTP


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPS


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections honour `watch`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
