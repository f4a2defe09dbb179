"""Send one planned payload to `POST /sdapi/v1/txt2img` (img2img with a picture), with retries.

Entry point: `Worker.submit(item) -> Outcome` (the `backends.base.Worker` of A1111). The
response body stays undecoded in the `Outcome`; `responses.decode` turns it into images on the
writer's thread, so the next request is already on its way while this one is written.

Here: retries with backoff, splitting a batch that runs out of GPU memory, model switches.
One attempt and what its failure means are `attempt`'s. Timeouts: a request that timed
out keeps the webui busy, so it is sent again only once the webui is idle, and the worker's
other requests wait at its gate meanwhile. A request that never reached the webui (connection
refused, connect timeout) is retried at once with the usual backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from sdbatch.backends.a1111.attempt import (
    IMG2IMG,
    TXT2IMG,
    Gate,
    NotANumber,
    OutOfMemory,
    Permanent,
    Tally,
    Transient,
    post_once,
)
from sdbatch.backends.a1111.backoff import wait_before_retry
from sdbatch.backends.a1111.oom import OOM_RETRIES, batch_size, split_batch
from sdbatch.backends.a1111.responses import server_message
from sdbatch.backends.a1111.wait import sampling_step, webui_busy
from sdbatch.backends.base import Outcome, Response
from sdbatch.backends.fetch import failure, fetch
from sdbatch.backends.inputs import InputChanged, attach
from sdbatch.backends.session import generation_headers, make_session
from sdbatch.errors import ServerUnreachableError
from sdbatch.job.loader import ServerConfig
from sdbatch.plan.expand import PlannedPayload

log = logging.getLogger("sdbatch")

INTERRUPT = "/sdapi/v1/interrupt"
INTERRUPT_TIMEOUT = 5.0
# A model can make NaNs only now and then (a random seed's bad luck); a second NaN is final.
NAN_RETRIES = 1


@dataclass
class _Split:
    """Shared by the parts of one split payload. Once a single image has run out of memory
    for good (after its own retries), the rest is pointless: every part needs at least that
    one image's memory, so the remaining parts fail at once, unsent, with its message."""

    hopeless: str | None = None


class Worker:
    """Posts payloads to one webui through one `requests.Session`; `submit` may be called from
    several threads at once."""

    def __init__(
        self,
        server: ServerConfig,
        *,
        url: str | None = None,
        session: requests.Session | None = None,
        translate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        loaded: str | None = None,
    ) -> None:
        self.server = server
        self.url = url or server.url  # one of server.all_urls
        # What this webui needs sent instead of the planned payload (preflight's Translation:
        # canonical checkpoint names, legacy sampler names); the manifest records the result.
        self._translate = translate or dict
        self.model_switches = 0
        # The checkpoint the webui holds for us: the one of the last answer with images, at
        # first the one it had loaded when the run began (preflight's `loaded`). Failing that,
        # the checkpoint preflight pins in every payload naming none, which is the one loaded
        # on the run's first webui then; without preflight it is unknown (None), and the first
        # answer is not counted as a switch, since it may well have needed none.
        self._model = loaded or _checkpoint(self._translate({}))
        self._model_lock = threading.Lock()
        self.session = session or make_session(server)
        # Per request rather than on the session: the session's /progress polls and preflight
        # GETs are small and may stay gzipped; a session passed in keeps its own headers too.
        self._post_headers = generation_headers(server)
        self._sleep = sleep
        self._clock = clock
        self._base = self.url.rstrip("/")
        self.gate = Gate(sleep=sleep, monotonic=monotonic)

    def sampling_step(self) -> str | None:
        return sampling_step(self.session, self.url)

    def busy(self) -> bool:
        return webui_busy(self.session, self.url)

    def interrupt(self) -> None:
        """Ask the webui to stop the job it is running (best effort, never raises). It stops
        only the current job; one queued behind it still runs (a1111-api.md §3)."""
        try:
            response = fetch(
                self.session, "POST", self._base + INTERRUPT, timeout=INTERRUPT_TIMEOUT
            )
        except requests.RequestException as exc:
            log.warning("could not interrupt the webui at %s: %s", self.url, failure(exc))
            return
        if response.status_code >= 300:  # A1111 answers 200 {}, SD.Next 204
            log.warning("interrupting the webui failed: %s", server_message(response))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("attempt %d failed (%s); retrying in %.1f s", state.attempt_number, exc, wait)

    def _post(
        self,
        item: PlannedPayload,
        payload: Mapping[str, Any],
        tally: Tally,
        wire: Mapping[str, Any],
        oom_retries: int = OOM_RETRIES,
    ) -> bytes:
        """One payload with retries. An out-of-memory error of a splittable batch is raised at
        once; at batch_size 1 it gets `oom_retries` retries, other 5xx server.retries. `wire`
        replaces fields of `payload` on the wire only: the pictures' bytes for their stamps."""
        sent = {**payload, **wire} if wire else payload
        endpoint = IMG2IMG if item.input is not None else TXT2IMG
        splittable = batch_size(payload) > 1
        ooms = others = nans = 0

        def retry(exc: BaseException) -> bool:
            if isinstance(exc, OutOfMemory):
                return not splittable and ooms <= oom_retries
            if isinstance(exc, NotANumber):
                return nans <= NAN_RETRIES
            return isinstance(exc, Transient) and others <= self.server.retries

        retrying = tenacity.Retrying(
            wait=wait_before_retry,
            retry=tenacity.retry_if_exception(retry),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                try:
                    return post_once(
                        self.session,
                        self.url,
                        sent,
                        timeout=self.server.timeout,
                        gate=self.gate,
                        tally=tally,
                        index=item.index,
                        headers=self._post_headers,
                        endpoint=endpoint,
                    )
                except OutOfMemory:
                    ooms += 1
                    raise
                except NotANumber:
                    nans += 1
                    raise
                except Transient:
                    others += 1
                    raise
        raise AssertionError("unreachable: tenacity returns or raises")

    def _send(
        self,
        item: PlannedPayload,
        payload: Mapping[str, Any],
        first: int,
        tally: Tally,
        responses: list[Response],
        wire: Mapping[str, Any],
        split: _Split,
    ) -> list[str]:
        """Send a payload, splitting it on out of memory; collect responses in image order and
        return the errors of the parts that failed. A part that exhausts its retries on a
        timeout or connection error raises: the other parts would only fare the same."""
        if split.hopeless is not None:
            return [f"{split.hopeless} (not sent: one image alone did not fit)"]
        try:
            body = self._post(item, payload, tally, wire, oom_retries=OOM_RETRIES)
            responses.append(Response(payload, first, body))
            return []
        except Permanent as exc:
            return [str(exc)]
        except OutOfMemory as exc:
            if batch_size(payload) < 2:
                split.hopeless = str(exc)
                return [str(exc)]
        parts = split_batch(payload)
        log.info(
            "splitting payload %d into %d requests of batch_size %d and %d",
            item.index,
            len(parts),
            batch_size(parts[0].payload),
            batch_size(parts[1].payload),
        )
        errors: list[str] = []
        for part in parts:
            first_part = first + part.first_image
            errors += self._send(item, part.payload, first_part, tally, responses, wire, split)
        return errors

    def submit(self, item: PlannedPayload) -> Outcome:
        """Send one planned payload: retry transient failures, split a batch that runs out of
        GPU memory, try a 4xx exactly once.

        Raises ServerUnreachableError when no attempt reached the server at all: every later
        payload would fail the same way, so the run stops instead of burning through the plan.
        """
        started = self._clock()
        tally = Tally()
        responses: list[Response] = []
        payload = self._translate(item.payload)
        try:
            attached = attach(item)
        except InputChanged as exc:
            return Outcome(item, (), str(exc), 0, started, self._clock(), self.url)
        wire: Mapping[str, Any] = {}
        if attached is not None:  # the manifest keeps names and hashes, not the bytes
            payload, wire = {**payload, **attached.recorded}, attached.wire
        try:
            errors = self._send(item, payload, 0, tally, responses, wire, _Split())
        except Transient as exc:
            if not tally.reached:
                raise ServerUnreachableError(
                    f"{exc} (gave up after {tally.attempts} attempts)"
                ) from exc
            errors = [str(exc)]
        if responses:
            self._count_model_switch(payload)
        error = errors[0] if errors else None
        if error is not None and responses:
            made = sum(batch_size(r.payload) * int(r.payload.get("n_iter") or 1) for r in responses)
            error += f" ({item.image_count - made} of {item.image_count} images not made)"
        finished = self._clock()
        return Outcome(item, tuple(responses), error, tally.attempts, started, finished, self.url)

    def model(self, item: PlannedPayload) -> str | None:
        """The checkpoint `item` is sent with, after this webui's translation (its titles)."""
        return _checkpoint(self._translate(item.payload))

    def _count_model_switch(self, payload: Mapping[str, Any]) -> None:
        """The webui made images for `payload`, so it held the payload's checkpoint: one other
        than it held for the previous answer was a load. Counted from answers, not requests, so
        a request that never got there or failed before generating counts nothing; in answer
        order, which is the order the webui ran them in, since dispatch never has two
        checkpoints in flight at one webui. A payload naming none ran on whatever was loaded.
        Whether the webui really used the checkpoint asked is the post-check's (a mismatch)."""
        model = _checkpoint(payload)
        if model is None:
            return
        with self._model_lock:
            if model != self._model:
                self.model_switches += self._model is not None
                self._model = model


def _checkpoint(payload: Mapping[str, Any]) -> str | None:
    settings = payload.get("override_settings")
    model = settings.get("sd_model_checkpoint") if isinstance(settings, Mapping) else None
    return None if model is None else str(model)
