"""A stand-in for the AUTOMATIC1111 webui v1.10.1 `--api`, for trying sdbatch without a GPU and
for tests and benchmarks.

It is a real HTTP server (stdlib `ThreadingHTTPServer`, daemon threads) that answers
`POST /sdapi/v1/txt2img` and `/img2img` the way the webui does (a1111-api.md, and the real
v1.10.1's recorded answers in tests/data/real-a1111): pydantic-v1 coercion and 422 bodies, a FIFO
queue lock, webui seeds, v1.10 sampler/scheduler fallbacks, options that leak, `info` as a JSON
string, a grid only with `save_images`, and real PNG/JPEG/WEBP images of the requested size
carrying their infotext (with `--noise`, seeded noise as big as real pictures). It also serves
/progress, /interrupt, /skip, /options, /samplers, /schedulers, /sd-models, /upscalers,
/latent-upscale-modes, /loras, /embeddings, /hypernetworks, /prompt-styles, the refresh routes,
/memory and /cmd-flags, with optional HTTP Basic auth on `/sdapi/v1/*`.

`behaviour="v1.9" | "v1.8" | "forge" | "sdnext"` poses as another webui (behaviours.py: sampler
validation, request model, error shapes, info keys, routes); `substitute={"sampler_name": ...}`
silently replaces a requested value; `.model_loads` counts checkpoint switches.

Tests inject faults (500s and other statuses, connection resets, hangs, random rates,
out-of-memory errors above a batch size or for given seeds, long jobs, answers spoiled after they
were made and fixed raw answers by route, as a broken or hostile server gives them) through
`MockWebui.inject(...)` or `POST /mock/faults`, and read what happened from `.requests`,
`.generated` (both with server-clock times) and `.busy_seconds` or `GET /mock/log`.

    with MockWebui(seed=1234, image_delay=0.1) as srv:
        srv.inject(fail_next=2, fail_error="OutOfMemoryError", fail_message="CUDA out of memory")
        ...  # point a client at srv.url
"""

from __future__ import annotations

from sdbatch.standin.a1111.catalog import Catalog
from sdbatch.standin.a1111.faults import FaultSettings
from sdbatch.standin.a1111.records import GeneratedImage, LoggedRequest
from sdbatch.standin.a1111.state import FifoLock
from sdbatch.standin.a1111.webui import MockWebui

__all__ = [
    "Catalog",
    "FaultSettings",
    "FifoLock",
    "GeneratedImage",
    "LoggedRequest",
    "MockWebui",
]
