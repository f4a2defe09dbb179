"""The A1111 backend: reach the webuis, learn what each one offers, and check the job against
it before a single image is generated.

Entry point: `BACKEND.connect(job, auth=...) -> Fleet` (or `connect`), the `backends.base`
seam for A1111, Forge and SD.Next: one session per webui (credentials, proxy
headers, TLS), an optional wait for them to come up, the preflight of every webui (every
sampler, scheduler, checkpoint and upscaler the plan will send, against the webui's own lists),
and one `Worker` per webui that sends payloads in the form that webui needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdbatch.backends.a1111.postcheck import compare
from sdbatch.backends.a1111.preflight import ServerFacts, Translation, check_all, inspect_server
from sdbatch.backends.a1111.responses import decode
from sdbatch.backends.a1111.worker import Worker
from sdbatch.backends.base import GeneratedImage, Response
from sdbatch.backends.limits import Limits
from sdbatch.backends.servers import open_servers, reachable
from sdbatch.job.loader import Job

log = logging.getLogger("sdbatch")


@dataclass(frozen=True)
class Fleet:
    """The webuis of one run: `backends.base.Connection` for A1111."""

    workers: list[Worker]
    facts: Mapping[str, ServerFacts]  # by url; empty when preflight was skipped
    # Image-changing options every payload carries at the server's off-default value, though
    # the job never asked for them: key -> (value, default). Each image is marked with them.
    inherited: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @property
    def checked(self) -> bool:
        return bool(self.facts)

    def decode(self, response: Response) -> list[GeneratedImage]:
        return decode(response, max_pixels=self.limits.max_image_pixels)

    def postcheck(self, url: str, image: GeneratedImage) -> Mapping[str, list[Any]]:
        """What the webui says it used for this image, against what it was asked."""
        return compare(
            image.payload,
            image.info,
            image.infotext,
            self.facts.get(url),
            png_size=image.size,
            seed=image.seed,
            inherited=self.inherited,
        )

    def describe(self) -> str:
        parts = []
        for url, facts in self.facts.items():
            version = f" {facts.version}" if facts.version else ""
            parts.append(f"{url} ({facts.flavour}{version})")
        return ", ".join(parts) or ", ".join(w.url for w in self.workers)


def connect(
    job: Job,
    *,
    auth: tuple[str, str] | None = None,
    preflight: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> Fleet:
    """Sessions, wait, preflight, workers. Raises UsageError (exit 2, nothing sent) for server
    settings that cannot work (credentials, headers, CA bundle, limits), JobValidationError
    (exit 2) when the job asks a webui for something it does not have, ServerUnreachableError
    (exit 3) when none answers and ServerError (exit 3) when one answers nonsense."""
    server = job.server
    opened = open_servers(server, auth=auth, environ=environ)
    urls, limits, sessions = opened.urls, opened.limits, opened.sessions
    if not preflight:
        workers = [Worker(server, url=url, session=sessions[url]) for url in urls]
        return Fleet(workers, {}, limits=limits)
    timeout = min(server.timeout, 60.0)
    facts = reachable(urls, lambda url: inspect_server(url, sessions[url], timeout=timeout))
    translations: list[Translation] = check_all(job, facts)
    workers = [
        Worker(
            server,
            url=f.url,
            session=sessions[f.url],
            translate=t.apply,
            loaded=f.current_checkpoint,  # switches are counted from what each webui holds
        )
        for f, t in zip(facts, translations, strict=True)
    ]
    return Fleet(workers, {f.url: f for f in facts}, translations[0].inherited, limits)


class A1111:
    """`backends.base.Backend` for AUTOMATIC1111 v1.x and the forks that keep its API."""

    name = "a1111"
    connect = staticmethod(connect)


BACKEND = A1111()
