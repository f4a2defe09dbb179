"""One attempt at `POST /sdapi/v1/txt2img` (or img2img), what its failure means, and its gate.

Entry point: `post_once(session, url, payload, ...) -> bytes`, the response body, or one of
`Transient` (another attempt may cure it), `OutOfMemory` (a kind of Transient) or `Permanent`.
Retrying, backoff and splitting batches are the worker's (`worker`).

Timeouts: the webui does not notice a client giving up; a request that timed out keeps
generating and holds the webui's queue. So after a read timeout sdbatch does not send it again
at once. It closes a gate that stops its other request thread from sending anything new, polls
`/sdapi/v1/progress` every few seconds until the webui is idle (giving up on that after another
`server.timeout` seconds), then reopens the gate and the worker retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from sdbatch.backends.a1111.backoff import retry_after
from sdbatch.backends.a1111.oom import batch_size, is_out_of_memory
from sdbatch.backends.a1111.responses import error_class, server_message
from sdbatch.backends.a1111.wait import webui_busy
from sdbatch.backends.fetch import (
    NO_API_HINT,
    Answer,
    AnswerCut,
    AnswerTooLarge,
    CrossOriginRedirect,
    failure,
    fetch,
)

log = logging.getLogger("sdbatch")

TXT2IMG = "/sdapi/v1/txt2img"
IMG2IMG = "/sdapi/v1/img2img"
IDLE_POLL = 3.0  # between /progress polls while a timed-out job finishes


class Transient(Exception):
    """An attempt failed in a way another attempt may cure (connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, *, reached: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reached = reached  # did the server answer at all?
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After)


class OutOfMemory(Transient):
    """A 5xx out-of-memory error: split the batch if it has more than one image, else retry."""


class Permanent(Exception):
    """The server rejected the payload itself (4xx); sending it again cannot help."""


class NotANumber(Transient):
    """NansException: the model made NaNs. Usually every time; tried once more at most."""


# 500s whose Python exception says the payload itself breaks the webui: every retry fails the
# same way (OBSERVED 7), so each is sent once and recorded with what to change.
_DETERMINISTIC: dict[str, str] = {
    "ZeroDivisionError": "steps must be 1 or more",
    "TypeError": "a field the webui needs is null or of the wrong kind",
    "AssertionError": "the webui refused a value of this payload (a null prompt, or a sampler "
    "name it does not have)",
    "KeyError": "override_settings names an option this webui does not have",
    "IndexError": "a value of this payload is out of the webui's range",
    "ValueError": "a value of this payload is one the webui cannot use",
    "AttributeError": "the webui cannot use a value of this payload",
    "NotImplementedError": "the webui cannot do this combination of settings",
}
NAN_HINT = (
    "the model produced NaNs: this checkpoint (or its VAE) cannot make this image; try another "
    "checkpoint or VAE, or start the webui with --no-half"
)


def deterministic_hint(error: str | None, message: str, payload: Mapping[str, Any]) -> str | None:
    """What to change, when the webui's exception class `error` fails the same way on every
    attempt; None when another attempt may succeed."""
    if error == "Exception" and "could not find upscaler" in message:
        return "hr_upscaler names an upscaler this webui does not have (GET /sdapi/v1/upscalers)"
    if (
        error == "TypeError"
        and payload.get("enable_hr")
        and payload.get("denoising_strength") is None
    ):
        return "enable_hr needs a denoising_strength"
    return _DETERMINISTIC.get(error or "")


# Statuses that say "not now" (rate limit, overload); their Retry-After is honoured.
_LATER = (429, 503)
# Statuses that fail the same way on every attempt: no such route, or not implemented.
_NEVER = (404, 405, 501)


@dataclass
class Tally:
    """Shared by every part of one planned payload."""

    attempts: int = 0
    reached: bool = False


class Gate:
    """Open unless some request thread is waiting for a timed-out job to finish; every attempt
    passes it first. A count, because both request threads may time out at once."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._closers = 0
        self._open = threading.Event()
        self._open.set()
        self._sleep = sleep
        self._monotonic = monotonic

    def close(self) -> None:
        with self._lock:
            self._closers += 1
            self._open.clear()

    def reopen(self) -> None:
        with self._lock:
            self._closers -= 1
            if self._closers == 0:
                self._open.set()

    def wait(self) -> None:
        self._open.wait()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def hold_until_idle(self, session: requests.Session, base: str, timeout: float) -> None:
        """After a read timeout: hold back new requests until the timed-out job is done."""
        self.close()
        try:
            log.warning(
                "no answer within %g s; waiting for the webui to finish that job "
                "before sending it again",
                timeout,
            )
            deadline = self._monotonic() + timeout
            while webui_busy(session, base):
                if self._monotonic() >= deadline:
                    log.warning("the webui is still busy; sending again anyway")
                    return
                self._sleep(IDLE_POLL)
        finally:
            self.reopen()


def post_once(
    session: requests.Session,
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float,
    gate: Gate,
    tally: Tally,
    index: int,
    headers: Mapping[str, str] | None = None,
    endpoint: str = TXT2IMG,
) -> bytes:
    """Send `payload` once, after the gate opens; `index` is the planned payload's, for the log.
    `headers` go with this request only, over the session's (`session.generation_headers`)."""
    base = url.rstrip("/")
    gate.wait()
    tally.attempts += 1
    try:
        response = fetch(
            session, "POST", base + endpoint, json=payload, timeout=timeout, headers=headers
        )
    except requests.ConnectionError as exc:  # also a connect timeout: nothing was sent
        raise Transient(f"cannot reach {url}: {failure(exc, timeout)}", reached=False) from exc
    except requests.Timeout as exc:  # a read timeout: the webui has it and goes on
        tally.reached = True
        gate.hold_until_idle(session, base, timeout)
        raise Transient(failure(exc, timeout), reached=True) from exc
    except (AnswerTooLarge, CrossOriginRedirect) as exc:  # the same on every attempt
        tally.reached = True
        raise Permanent(failure(exc)) from exc
    except (AnswerCut, requests.RequestException) as exc:  # cut off, undecodable: try again
        tally.reached = True
        raise Transient(failure(exc), reached=True) from exc
    tally.reached = True
    if response.status_code == 200:
        return response.content
    return _refusal(response, payload, index, endpoint)


def _refusal(response: Answer, payload: Mapping[str, Any], index: int, endpoint: str) -> bytes:
    """Raise what a non-200 answer means (never returns)."""
    message = server_message(response)
    status = response.status_code
    if is_out_of_memory(status, message):
        log.warning(
            "the webui ran out of GPU memory on payload %d (batch_size %d): %s",
            index,
            batch_size(payload),
            message,
        )
        raise OutOfMemory(message, reached=True)
    if status in _LATER:
        raise Transient(message, reached=True, retry_after=retry_after(response))
    if status in _NEVER:
        hint = NO_API_HINT if status == 404 and endpoint.startswith("/sdapi/") else None
        hint = hint or "not retried: it fails the same way every time"
        raise Permanent(f"{message} ({hint})")
    if status >= 500:
        error = error_class(response)
        if error == "NansException":
            raise NotANumber(f"{message} ({NAN_HINT})", reached=True)
        hint = deterministic_hint(error, message, payload)
        if hint is not None:
            raise Permanent(f"{message} ({hint}; not retried: it fails the same way every time)")
        raise Transient(message, reached=True)
    raise Permanent(message)
