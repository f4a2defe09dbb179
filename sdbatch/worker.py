"""Stage 3: send one planned payload to `POST /sdapi/v1/txt2img`, retrying what is worth retrying.

Entry point: `Worker.submit(item) -> Outcome`. The response body stays undecoded in the
`Outcome`; `decode(outcome)` turns it into images on the writer's thread, so the next request is
already on its way while this one is decoded and written.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from sdbatch.errors import ServerUnreachableError
from sdbatch.loader import ServerConfig
from sdbatch.plan import PlannedPayload

log = logging.getLogger("sdbatch")

TXT2IMG = "/sdapi/v1/txt2img"
# Exponential backoff with jitter between attempts, in seconds.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0


class _Transient(Exception):
    """An attempt failed in a way another attempt may cure (connection, timeout, 5xx)."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached  # did the server answer at all?


class _Permanent(Exception):
    """The server rejected the payload itself (4xx); sending it again cannot help."""


class DecodeError(Exception):
    """A 200 response that does not follow the txt2img contract."""


@dataclass(frozen=True)
class Response:
    """One 200 answer. A payload split after an out-of-memory error has several."""

    payload: Mapping[str, Any]  # exactly what was sent for this part
    first_image: int  # where its images start among the planned payload's images
    body: bytes  # undecoded: decoding happens on the writer's thread


@dataclass(frozen=True)
class Outcome:
    """What became of one planned payload: its responses, and the webui's message if some or
    all of its images could not be made."""

    item: PlannedPayload
    responses: tuple[Response, ...]
    error: str | None
    attempts: int
    started: float  # epoch seconds
    finished: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class GeneratedImage:
    image_index: int  # position among the planned payload's images
    data: bytes
    seed: int  # the seed the server used for this image
    payload: Mapping[str, Any]  # the request that made it
    info: Mapping[str, Any]  # that response's decoded `info`


def server_message(response: requests.Response) -> str:
    """The webui's own words for an error response, whichever of its body shapes it used."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}: {text[:300] or response.reason}"
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI's 422 validation list
            parts = []
            for err in detail:
                loc = [str(x) for x in err.get("loc", []) if x != "body"]
                parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', '')}")
            return f"HTTP {response.status_code}: " + "; ".join(parts)
        # A1111 {error, detail, body, errors}; Forge says `message` instead of `errors`.
        words = body.get("errors") or body.get("message") or detail or ""
        kind = body.get("error")
        text = f"{kind}: {words}" if kind and words else str(kind or words)
        return f"HTTP {response.status_code}: {text or response.reason}"
    return f"HTTP {response.status_code}: {body}"  # SD.Next answers a TypeError with a bare string


class Worker:
    """Posts payloads to one webui through one `requests.Session`."""

    def __init__(
        self,
        server: ServerConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._url = server.url.rstrip("/") + TXT2IMG

    def _post_once(self, payload: Mapping[str, Any]) -> bytes:
        try:
            response = self.session.post(self._url, json=payload, timeout=self.server.timeout)
        except requests.Timeout as exc:
            raise _Transient(f"no answer within {self.server.timeout:g} s", reached=True) from exc
        except requests.ConnectionError as exc:
            raise _Transient(f"cannot reach {self.server.url}: {exc}", reached=False) from exc
        if response.status_code == 200:
            return response.content
        message = server_message(response)
        if response.status_code >= 500:
            raise _Transient(message, reached=True)
        raise _Permanent(message)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("attempt %d failed (%s); retrying in %.1f s", state.attempt_number, exc, wait)

    def submit(self, item: PlannedPayload) -> Outcome:
        """Send one payload, retrying transient failures; a 4xx is tried exactly once.

        Raises ServerUnreachableError when no attempt reached the server at all: every later
        payload would fail the same way, so the run stops instead of burning through the plan.
        """
        started = self._clock()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.server.retries + 1),
            wait=tenacity.wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX),
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        reached = False
        attempts = 0
        try:
            for attempt in retrying:
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    try:
                        body = self._post_once(item.payload)
                    except _Transient as exc:
                        reached = reached or exc.reached
                        raise
            response = Response(item.payload, 0, body)
            return Outcome(item, (response,), None, attempts, started, self._clock())
        except _Transient as exc:
            if not reached:
                raise ServerUnreachableError(f"{exc} (gave up after {attempts} attempts)") from exc
            return Outcome(item, (), str(exc), attempts, started, self._clock())
        except _Permanent as exc:
            return Outcome(item, (), str(exc), attempts, started, self._clock())


def decode(response: Response) -> list[GeneratedImage]:
    """Apply the response contract: `info` is a JSON string, and the real images are
    `images[index_of_first_image : index_of_first_image + batch_size*n_iter]` (a grid may sit
    before them, extension images after them), each with its seed from `info.all_seeds`.
    """
    try:
        body = json.loads(response.body)
        raw_info = body.get("info")
        info = json.loads(raw_info) if isinstance(raw_info, str) else (raw_info or {})
        images = body.get("images") or []
    except (ValueError, AttributeError) as exc:
        raise DecodeError(f"the response is not txt2img JSON: {exc}") from exc
    if not isinstance(info, dict) or not isinstance(images, list):
        raise DecodeError("the response has no usable `info` / `images`")
    sent = response.payload
    first = int(info.get("index_of_first_image") or 0)
    expected = int(sent.get("batch_size") or 1) * int(sent.get("n_iter") or 1)
    seeds = info.get("all_seeds") or []
    result = []
    for i, encoded in enumerate(images[first : first + expected]):
        try:
            data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, AttributeError) as exc:
            raise DecodeError(f"image {i} is not valid base64: {exc}") from exc
        seed = int(seeds[i]) if i < len(seeds) else int(sent["seed"]) + i
        result.append(GeneratedImage(response.first_image + i, data, seed, sent, info))
    return result
