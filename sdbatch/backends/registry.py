"""Which backend serves a job: by the job file's `server.type` (default `a1111`).

Entry point: `backend_for(job) -> Backend`. A server kind's package is imported only when a job
asks for it, so a run pays for one backend's imports, and `run/` never names a backend.
"""

from __future__ import annotations

import importlib

from sdbatch.backends.base import Backend
from sdbatch.errors import UsageError
from sdbatch.job.loader import Job

# server.type -> the module whose BACKEND implements it. A new kind adds a line here, a
# package beside a1111/, and its name to the schema's server.type enum.
KINDS = {
    "a1111": "sdbatch.backends.a1111.connect",
}


def backend_for(job: Job) -> Backend:
    kind = job.server.type
    if kind not in KINDS:  # the schema's enum stops this first; a direct caller may not
        raise UsageError(f"unknown server type {kind!r}; known: {', '.join(sorted(KINDS))}")
    backend: Backend = importlib.import_module(KINDS[kind]).BACKEND
    return backend
