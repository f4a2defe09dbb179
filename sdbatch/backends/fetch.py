"""One HTTP request whose answer is read with limits: a size cap and a total deadline.

Entry point: `fetch(session, method, url, timeout=..., **kwargs) -> Answer`; `failure(exc)`
puts what went wrong on the wire into words. Why not `session.request(...).content`: requests'
`timeout` bounds each socket read, not the request, so a server that trickles a byte a second
holds a thread forever; and `.content` holds whatever the server sends, a gzip bomb inflated
in full included. Here the body is streamed: at most `max_bytes` after decoding (urllib3
inflates at most one chunk's worth per read), and the socket's timeout shrinks to what is left
of the deadline before each read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from sdbatch.backends.redact import redact
from sdbatch.backends.watchdog import watch

CHUNK = 256 * 1024
# What every answer may weigh after decoding unless the run sets another limit: a batch of 16
# hires 2048x2048 PNGs (base64) fits, a runaway or hostile answer does not fill the memory.
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024
API_HINT = "is the webui running, with --api? --wait N waits for it to come up"
NO_API_HINT = "the webui has no such API route: was it started with --api?"
COMFY_HINT = "is ComfyUI running? --wait N waits for it to come up"


class AnswerTooLarge(requests.RequestException):
    """The answer (decoded) is larger than the run's limit."""


class AnswerCut(requests.exceptions.ChunkedEncodingError):
    """The connection ended before the whole answer came (Content-Length not met)."""


class AnswerTooSlow(requests.exceptions.ReadTimeout):
    """The answer did not arrive in full within the request's deadline."""


class CrossOriginRedirect(requests.RequestException):
    """The server redirected to another scheme, host or port; not followed."""


@dataclass(frozen=True)
class Answer:
    """A complete answer, read within the limits; the parts of `requests.Response` sdbatch uses."""

    url: str
    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def max_bytes_of(session: requests.Session) -> int:
    """The session's answer limit (`session.ApiSession` carries the run's)."""
    limit = getattr(session, "max_response_bytes", None)
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_RESPONSE_BYTES


def fetch(
    session: requests.Session, method: str, url: str, *, timeout: float, **kwargs: Any
) -> Answer:
    """Send one request and read its whole answer within `timeout` seconds from now and the
    session's size limit. Raises requests' exceptions, and AnswerTooLarge, AnswerCut,
    AnswerTooSlow (a ReadTimeout) and CrossOriginRedirect."""
    deadline = time.monotonic() + timeout
    limit = max_bytes_of(session)
    try:
        with watch(deadline):
            response = session.request(method, url, timeout=timeout, stream=True, **kwargs)
    except requests.ConnectionError as exc:
        if time.monotonic() < deadline:
            raise
        # The watchdog cut a server that was still sending its status line and headers.
        raise AnswerTooSlow(f"the answer did not arrive in full within {timeout:g} s") from exc
    try:
        declared = response.headers.get("content-length", "")
        encoded = "content-encoding" in response.headers
        if not encoded and declared.isdigit() and int(declared) > limit:
            raise AnswerTooLarge(_too_large(limit))
        content = _read(response, deadline, timeout, limit)
    finally:
        response.close()
    return Answer(
        response.url, response.status_code, response.reason or "", response.headers, content
    )


def _read(response: requests.Response, deadline: float, timeout: float, limit: int) -> bytes:
    raw = response.raw
    parts: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AnswerTooSlow(f"the answer did not arrive in full within {timeout:g} s")
        _shorten_timeout(raw, left)
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise AnswerTooSlow(f"the answer did not arrive in full within {timeout:g} s") from exc
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(
                f"the answer's Content-Encoding does not decode: {exc}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise AnswerCut(f"the answer was cut off after {size} bytes") from exc
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(_too_large(limit))
        parts.append(chunk)


def _shorten_timeout(raw: Any, left: float) -> None:
    """The next socket read may block only as long as the deadline allows."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.01, left))


def _too_large(limit: int) -> str:
    return (
        f"the answer is larger than {limit} bytes (server.max_response_bytes / "
        "SDBATCH_MAX_RESPONSE_BYTES)"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps, outermost first: requests wraps urllib3 wraps the socket's."""
    found = [exc]
    for _ in range(10):
        here = found[-1]
        inner = here.__cause__ or here.__context__
        inner = inner or next((a for a in here.args if isinstance(a, BaseException)), None)
        inner = inner or getattr(here, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException) or inner in found:
            break
        found.append(inner)
    return found


def failure(
    exc: requests.RequestException, timeout: float | None = None, *, hint: str = API_HINT
) -> str:
    """What went wrong, in words, with what to do when it is the usual mistake (`hint`: what
    the server kind needs to be reachable); redacted. `timeout`, when given, is named in the
    words for a timeout."""
    if isinstance(exc, (AnswerTooLarge, AnswerCut, AnswerTooSlow, CrossOriginRedirect)):
        return redact(str(exc))
    chain = _chain(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return redact(f"TLS error ({_short(chain)}); see server.verify")
    within = "the timeout" if timeout is None else f"{timeout:g} s"
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {within} ({hint})"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {within}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return f"connection refused ({hint})"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return redact(f"unknown host ({_short(chain)}); check server.url")
    if isinstance(exc, requests.ConnectionError):
        return redact(f"connection failed: {_short(chain)}")
    return redact(_short(chain))


def _short(chain: list[BaseException]) -> str:
    """The innermost reason, without the pool and retry noise around it."""
    inner = chain[-1]
    text = str(inner) or type(inner).__name__
    marker = "Failed to establish a new connection: "
    return text.rsplit(marker, 1)[-1][:200]
