"""The seam between the run loop and a kind of server: what `run/` and `output/` may know.

A server kind (A1111 and its forks today) lives in its own package under `backends/` and hands
the run loop three things, all defined here:

- `Backend.connect(job, ...) -> Connection`: recognise and inspect every server of the job,
  preflight the job against what they offer (raising `JobValidationError` with every problem at
  its `file:line:col`), and learn how payloads must be translated for each of them;
- `Connection.workers`: one `Worker` per server, which submits one planned payload and returns
  an `Outcome` with the answer undecoded, reports the sampling step, and interrupts;
- `Connection.decode(response)` and `Connection.postcheck(url, image)`: run on the writer's
  thread, they turn an answer into images (seed and effective parameters included) and say
  what the server made otherwise than asked.

Nothing here knows an endpoint, a field of a server's answer or a wire format.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from sdbatch.job.loader import Job
from sdbatch.plan.expand import PlannedPayload

# What every backend's decode reports an image was made with, and the manifest records.
USED_FIELDS = (
    "sampler_name",
    "scheduler",
    "sd_model_name",
    "sd_model_hash",
    "server_version",
    "parameters",  # every generation parameter the server reports, by its own names
)


class DecodeError(Exception):
    """A successful answer that does not follow the server kind's contract."""


@dataclass(frozen=True)
class Response:
    """One successful answer. A payload split after an out-of-memory error has several."""

    payload: Mapping[str, Any]  # exactly what was sent for this part
    first_image: int  # where its images start among the planned payload's images
    body: bytes  # undecoded: decoding happens on the writer's thread


@dataclass(frozen=True)
class Outcome:
    """What became of one planned payload: its answers, and the server's message if some or
    all of its images could not be made."""

    item: PlannedPayload
    responses: tuple[Response, ...]
    error: str | None
    attempts: int  # HTTP attempts for the planned payload, split parts included
    started: float  # epoch seconds
    finished: float
    server: str = ""  # the server that answered

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class GeneratedImage:
    image_index: int  # position among the planned payload's images
    data: bytes
    seed: int  # the seed the server used for this image
    payload: Mapping[str, Any]  # the request that made it
    info: Mapping[str, Any]  # the server's own record of it, in its own shape
    infotext: str | None = None  # the parameters text embedded in the picture, if any
    # What the server says it used, by USED_FIELDS.
    used: Mapping[str, Any] = field(default_factory=dict)
    # (width, height) as found when the backend decoded the whole image (`imagecheck`).
    checked_size: tuple[int, int] | None = field(default=None, compare=False)
    # Whether `payload` names the plan's fields (A1111's request does). A ComfyUI request is a
    # graph of node ids: its rows carry the plan's payload too, as `planned`, for the readers
    # (sheets, gallery) that look fields up by name.
    keeps_fields: bool = True

    @functools.cached_property
    def size(self) -> tuple[int, int]:
        """(width, height) from the image's header, read once for the writer and the
        post-check; OSError when the bytes are no image."""
        if self.checked_size is not None:
            return self.checked_size
        with Image.open(io.BytesIO(self.data)) as img:
            return img.size


class Worker(Protocol):
    """Sends payloads to one server; `submit` may be called from several threads at once."""

    @property
    def url(self) -> str: ...

    @property
    def model_switches(self) -> int:
        """How often this server loaded another checkpoint for us, in the order it ran them."""
        ...

    def model(self, item: PlannedPayload) -> str | None:
        """The checkpoint the server runs `item` on, in the server's own spelling; None when
        `item` leaves it to the server. The run loop never has payloads of two checkpoints at
        one server at once, so that it loads each once however the requests race there."""
        ...

    def submit(self, item: PlannedPayload) -> Outcome:
        """One planned payload, retried as the server kind warrants. Raises
        ServerUnreachableError when the server is gone for good."""
        ...

    def interrupt(self) -> None:
        """Ask the server to stop the generation it is running (best effort, bounded)."""
        ...

    def sampling_step(self) -> str | None:
        """`step 12/25` while the server samples, for the progress bar; None when unknown."""
        ...

    def busy(self) -> bool:
        """Does the server say it is running a job (anyone's)? False when it cannot tell."""
        ...


class Connection(Protocol):
    """The servers of one run, inspected and checked."""

    @property
    def workers(self) -> Sequence[Worker]: ...

    @property
    def checked(self) -> bool:
        """Whether preflight ran: without it there is nothing to post-check against."""
        ...

    def describe(self) -> str:
        """The servers in words, for `preflight passed: ...`."""
        ...

    def decode(self, response: Response) -> list[GeneratedImage]:
        """Raises DecodeError when the answer breaks the contract."""
        ...

    def postcheck(self, url: str, image: GeneratedImage) -> Mapping[str, list[Any]]:
        """What the server used for this image against what it was asked: {field: [asked,
        got]}, empty when it is as asked."""
        ...


class Backend(Protocol):
    name: str  # the job file's `server.type`

    def connect(
        self,
        job: Job,
        *,
        auth: tuple[str, str] | None,
        preflight: bool,
        environ: Mapping[str, str],
    ) -> Connection: ...
