"""Send one planned payload to a ComfyUI server and collect its images.

Entry point: `Worker.submit(item) -> Outcome` (the `backends.base.Worker` of ComfyUI). Each
`n_iter` is a prompt of its own (translation.py), posted with a prompt_id sdbatch chooses and the
worker's own client_id, whose socket is open BEFORE the post (listener.py). `submit` blocks until
ComfyUI's history has the prompt, so the run loop's `concurrency + 1` threads per server keep
one prompt queued behind the running one and the server never idles between images. The
images are downloaded with /view here (bounded by the session's size limit) and handed on
undecoded; `responses.decode` reads them on the writer's thread.

Timeouts: `server.timeout` per prompt once it runs (waiting behind other prompts in ComfyUI's
queue does not count), `POLL` between /history polls when the socket says nothing (`POLL_DEAF`
once it has missed a prompt's end). A server silent for `server.timeout`, or refusing
connections `server.retries` more times, is gone (ServerUnreachableError): the run loop rests
it and gives the payload to the other servers, since a prompt in a lost ComfyUI's queue (held
in its memory) is made again, not waited for.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests

from sdbatch.backends.base import Outcome, Response
from sdbatch.backends.comfyui.history import has_node_errors, rejection, settle, where
from sdbatch.backends.comfyui.listener import Listener
from sdbatch.backends.comfyui.translation import Translation, n_iter
from sdbatch.backends.fetch import COMFY_HINT, Answer, failure, fetch
from sdbatch.errors import ServerUnreachableError
from sdbatch.job.loader import ServerConfig
from sdbatch.plan.expand import PlannedPayload

log = logging.getLogger("sdbatch")

POLL = 1.0  # seconds between /history polls while the socket is quiet
# ... and once the socket has missed a prompt's end (dead, or open and mute): the run then
# hears of each image by polling alone, and the prompt queued behind the running one is all
# the server has, so a 1 s poll would leave a fast server idle most of the time.
POLL_DEAF = 0.1
SHORT = 10.0  # timeout of the small requests (/history, /queue, /interrupt)


class Worker:
    def __init__(
        self,
        server: ServerConfig,
        *,
        url: str,
        session: requests.Session,
        translation: Translation,
        version: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server, self.url, self.session = server, url, session
        self.translation, self.version, self._clock = translation, version, clock
        self._base = url.rstrip("/")
        self.client_id = uuid.uuid4().hex  # sdbatch's own: events of other clients never mix
        ws_base = "ws" + self._base[len("http") :]
        self.listener = Listener(f"{ws_base}/ws?clientId={self.client_id}")
        self._lock = threading.Lock()
        self._ours: set[str] = set()  # posted and not yet settled
        self._cancelled: set[str] = set()
        self._stopped = False  # interrupted: the run's hard stop, nothing more is posted
        self._model: str | None = None
        self._deaf = False  # the socket missed the end of the last prompt: poll faster
        self.model_switches = 0

    def model(self, item: PlannedPayload) -> str | None:
        return self.translation.payload_checkpoint(item.payload)

    def sampling_step(self) -> str | None:
        return self.listener.step()

    def busy(self) -> bool:
        try:
            body = fetch(self.session, "GET", self._base + "/prompt", timeout=SHORT).json()
            return int(body["exec_info"]["queue_remaining"]) > 0
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return False

    def interrupt(self) -> None:
        """Delete sdbatch's pending prompts and interrupt its running one; ComfyUI is left
        idle but for other clients' prompts, which are not sdbatch's to stop. Nothing is
        posted after it: a payload's next `n_iter` prompt would else start as this one ends."""
        with self._lock:
            self._stopped = True
            ours = sorted(self._ours)
            self._cancelled.update(ours)
        if not ours:
            return
        try:
            fetch(self.session, "POST", self._base + "/queue", timeout=SHORT, json={"delete": ours})
            for prompt_id in ours:  # only the one running is interrupted; others are ignored
                fetch(
                    self.session,
                    "POST",
                    self._base + "/interrupt",
                    timeout=SHORT,
                    json={"prompt_id": prompt_id},
                )
        except requests.RequestException as exc:
            log.warning("could not stop ComfyUI at %s: %s", self.url, failure(exc, hint=COMFY_HINT))

    def submit(self, item: PlannedPayload) -> Outcome:
        started = self._clock()
        prompt_ids = [str(uuid.uuid4()) for _ in range(n_iter(item.payload))]
        graphs = self.translation.graphs(item.payload, prompt_ids)
        per_prompt = int(item.payload.get("batch_size", 1) or 1)
        responses, errors, attempts = [], [], 0
        for k, (prompt_id, graph) in enumerate(zip(prompt_ids, graphs, strict=True)):
            body, error, tries = self._run(prompt_id, graph)
            attempts += tries
            if body is not None:
                responses.append(Response(graph, k * per_prompt, body))
            if error is not None:
                errors.append(error)
        error_text = "; ".join(dict.fromkeys(errors)) or None
        return Outcome(
            item, tuple(responses), error_text, attempts, started, self._clock(), server=self.url
        )

    def _run(
        self, prompt_id: str, graph: Mapping[str, Any]
    ) -> tuple[bytes | None, str | None, int]:
        self.listener.ensure()  # the socket first: events of a fast prompt are not lost
        self.listener.expect(prompt_id)
        with self._lock:
            if self._stopped:
                return None, "not sent: the run was stopped", 0
            self._ours.add(prompt_id)
        try:
            answer, tries = self._post(prompt_id, graph)
            node_errors = has_node_errors(answer)
            if answer.status_code != 200 or node_errors:
                return None, rejection(answer), tries
            entry, error = self._wait(prompt_id)
            if entry is None:
                return None, error, tries
            images, error = settle(entry, self.translation.save_node)
            if error is not None:
                return None, error, tries
            files, error = self._download(images)
            if error is not None:
                return None, error, tries
            self._count_model(graph)
            return self._pack(prompt_id, graph, files), None, tries
        finally:
            with self._lock:
                self._ours.discard(prompt_id)
            self.listener.forget(prompt_id)

    def _post(self, prompt_id: str, graph: Mapping[str, Any]) -> tuple[Answer, int]:
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        for attempt in range(self.server.retries + 1):
            try:
                answer = fetch(
                    self.session, "POST", self._base + "/prompt", timeout=SHORT * 3, json=body
                )
                if answer.status_code < 500 or attempt == self.server.retries:
                    return answer, attempt + 1
            except requests.RequestException as exc:
                if attempt == self.server.retries:
                    raise ServerUnreachableError(
                        f"ComfyUI at {self.url} is gone: {failure(exc, hint=COMFY_HINT)}"
                    ) from exc
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _get(self, path: str, **params: Any) -> Answer:
        """A small GET; a refused or cut connection is tried again `server.retries` times with
        backoff. Still refused, the server is gone: waiting out `server.timeout` for a prompt
        that died with it would hold the payload from the other servers."""
        for attempt in range(self.server.retries + 1):
            try:
                return fetch(
                    self.session, "GET", self._base + path, timeout=SHORT, params=params or None
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt == self.server.retries:
                    if not isinstance(exc, requests.ConnectionError):
                        raise  # cut off every time: the caller words it
                    raise ServerUnreachableError(
                        f"ComfyUI at {self.url} is gone: {failure(exc, hint=COMFY_HINT)}"
                    ) from exc
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, prompt_id: str) -> tuple[Mapping[str, Any] | None, str | None]:
        """The prompt's history entry once it is there; or why it never will be."""
        deadline = time.monotonic() + self.server.timeout
        gone_checks = 0
        while True:
            woke = self.listener.wait(prompt_id, POLL_DEAF if self._deaf else POLL)
            try:
                entry = self._get(f"/history/{prompt_id}").json()
                if isinstance(entry, Mapping) and isinstance(entry.get(prompt_id), Mapping):
                    self._deaf = not woke  # the socket told, or polling found it first
                    return entry[prompt_id], None
                state = None if woke else where(self._get("/queue").json(), prompt_id)
            except (requests.RequestException, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise ServerUnreachableError(
                        f"ComfyUI at {self.url} stopped answering: {exc}"
                    ) from exc
                continue
            if state == "pending":
                deadline = time.monotonic() + self.server.timeout
            elif state is None and not woke:
                gone_checks += 1  # twice: the history may be written just after the queue
                if gone_checks >= 2:
                    if prompt_id in self._cancelled:
                        return None, "deleted from ComfyUI's queue (stopped)"
                    return None, "ComfyUI lost the prompt (neither queued nor in its history)"
            self.listener.ensure()
            if time.monotonic() > deadline:
                return None, f"no result from ComfyUI within {self.server.timeout:g} s"

    def _download(self, images: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        files = []
        for image in images:
            ref = {k: str(image.get(k, "")) for k in ("filename", "subfolder", "type")}
            try:
                answer = self._get("/view", **ref)
            except requests.RequestException as exc:
                return [], f"could not download {ref['filename']}: {failure(exc, hint=COMFY_HINT)}"
            if answer.status_code != 200:
                return [], f"/view answered HTTP {answer.status_code} for {ref['filename']}"
            files.append({**ref, "data": base64.b64encode(answer.content).decode("ascii")})
        return files, None

    def _pack(self, prompt_id: str, graph: Mapping[str, Any], files: list[dict[str, Any]]) -> bytes:
        """The answer as the decoder reads it: the files, and what the graph says of them
        (the decoder knows no node ids: the workflow's are the user's)."""
        t = self.translation
        size = t.asked_size(graph)
        record = {
            "prompt_id": prompt_id,
            "seed": t.seed(graph),
            "version": self.version,
            "images": files,
            "sampler": dict(graph[t.sampler_node]["inputs"]),
            "checkpoint": t.checkpoint(graph),
            "size": list(size) if size else None,
            "expected": t.batch(graph),
        }
        return json.dumps(record).encode()

    def _count_model(self, graph: Mapping[str, Any]) -> None:
        name = self.translation.checkpoint(graph)
        if name is None:
            return
        with self._lock:
            if self._model is not None and name != self._model:
                self.model_switches += 1
            self._model = name


def _backoff(attempt: int) -> float:
    return min(2.0**attempt, 10.0)
