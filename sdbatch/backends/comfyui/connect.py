"""The ComfyUI backend: reach the servers, learn what each offers, check the job against it
before a single prompt is queued.

Entry point: `BACKEND.connect(job, auth=..., preflight=...) -> Servers` (the `backends.base`
seam for ComfyUI): one session per server (headers, TLS, limits as for the webui), an optional
wait for it to come up, the preflight against /object_info (preflight.py), and one `Worker`
per server (of several, one that cannot be reached is left out, as for the webui). A job with
its own `workflow:` posts that graph (usergraph.py), checked the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.backends.base import GeneratedImage, Response
from sdbatch.backends.comfyui.facts import ComfyFacts, inspect_server
from sdbatch.backends.comfyui.preflight import check_all
from sdbatch.backends.comfyui.responses import compare, decode
from sdbatch.backends.comfyui.translation import Translation
from sdbatch.backends.comfyui.worker import Worker
from sdbatch.backends.limits import Limits
from sdbatch.backends.servers import open_servers, reachable
from sdbatch.job.loader import Job


@dataclass(frozen=True)
class Servers:
    """The ComfyUI servers of one run: `backends.base.Connection`."""

    workers: list[Worker]
    facts: Mapping[str, ComfyFacts]
    limits: Limits

    @property
    def checked(self) -> bool:
        return bool(self.facts)

    def decode(self, response: Response) -> list[GeneratedImage]:
        return decode(response, max_pixels=self.limits.max_image_pixels)

    def postcheck(self, url: str, image: GeneratedImage) -> Mapping[str, list[Any]]:
        return compare(image)

    def describe(self) -> str:
        return ", ".join(f"{f.url} (ComfyUI {f.version})" for f in self.facts.values()) or (
            ", ".join(w.url for w in self.workers)
        )


def connect(
    job: Job,
    *,
    auth: tuple[str, str] | None = None,
    preflight: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> Servers:
    """Raises JobValidationError (exit 2, nothing queued) for what a server lacks,
    ServerUnreachableError (exit 3) when none answers, ServerError (exit 3) when a server
    is no ComfyUI."""
    server = job.server
    opened = open_servers(server, auth=auth, environ=environ)
    urls, limits, sessions = opened.urls, opened.limits, opened.sessions
    # ComfyUI has no "loaded" checkpoint nor sampler lists to guess: the facts are needed to
    # translate at all, so they are read even when the checks are skipped.
    timeout = min(server.timeout, 60.0)
    facts = reachable(urls, lambda url: inspect_server(url, sessions[url], timeout=timeout))
    translations: list[Translation] = check_all(job, facts) if preflight else []
    if not preflight:
        translations = [_unchecked(f, job) for f in facts]
    workers = [
        Worker(server, url=f.url, session=sessions[f.url], translation=t, version=f.version)
        for f, t in zip(facts, translations, strict=True)
    ]
    return Servers(workers, {f.url: f for f in facts} if preflight else {}, limits)


def _unchecked(facts: ComfyFacts, job: Job) -> Translation:
    checkpoints = facts.choices("CheckpointLoaderSimple", "ckpt_name")
    return Translation(
        facts.choices("KSampler", "sampler_name"),
        facts.choices("KSampler", "scheduler"),
        checkpoints[0] if checkpoints else "",
        job.workflow,
    )


class ComfyUI:
    """`backends.base.Backend` for ComfyUI (0.3.x)."""

    name = "comfyui"
    connect = staticmethod(connect)


BACKEND = ComfyUI()
