"""Which backend serves a job: by the job file's `server.type`, or by asking the server.

Entry point: `backend_for(job) -> Backend`. A server kind's package is imported only when a job
asks for it, so a run pays for one backend's imports, and `run/` never names a backend. When the
job names no type (`server.type` None: "detect"), the first server is asked: ComfyUI answers
GET /system_stats with its `system` record, A1111 and its forks do not (they answer
/sdapi/v1/options); a server that answers neither way is taken for A1111, whose preflight then
says what is wrong with it.
"""

from __future__ import annotations

import importlib

import requests

from sdbatch.backends.base import Backend
from sdbatch.errors import UsageError
from sdbatch.job.loader import Job

# server.type -> the module whose BACKEND implements it. A new kind adds a line here, a
# package beside a1111/, and its name to the schema's server.type enum.
KINDS = {
    "a1111": "sdbatch.backends.a1111.connect",
    "comfyui": "sdbatch.backends.comfyui.connect",
}
DETECT_TIMEOUT = 10.0


def detect(url: str) -> str:
    """The kind of server at `url`: "comfyui" or "a1111"."""
    from sdbatch.backends.comfyui.facts import is_comfyui

    with requests.Session() as session:
        session.trust_env = False  # a probe of the job's own server, never through a proxy
        return "comfyui" if is_comfyui(url, session, timeout=DETECT_TIMEOUT) else "a1111"


def backend_for(job: Job) -> Backend:
    # No type means "detect", but `detect` is not wired in yet: it must run only after the URL
    # checks (a URL with user:password@ is refused before any request is sent) and with the
    # job's session (headers, TLS) and --wait. Until then an absent type is A1111, as before.
    kind = job.server.type or "a1111"
    if kind not in KINDS:  # the schema's enum stops this first; a direct caller may not
        raise UsageError(f"unknown server type {kind!r}; known: {', '.join(sorted(KINDS))}")
    backend: Backend = importlib.import_module(KINDS[kind]).BACKEND
    return backend
