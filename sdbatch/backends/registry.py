"""Which backend serves a job: by the job file's `server.type`, or by asking the server.

Entry point: `backend_for(job) -> Backend`. A server kind's package is imported only when a job
asks for it, so a run pays for one backend's imports, and `run/` never names a backend.

When the job names no type, a job with `workflow:` is ComfyUI's; any other is detected by
`Detect.connect`: ComfyUI answers GET /system_stats with its `system` record, A1111 and its
forks do not (they answer /sdapi/v1/options). The probe goes out only after what every request
of the run must pass (`open_servers`: no credentials in a URL, the job's headers, TLS and size
limits, `--wait`), through the job's own session and within the job's timeout, so a hostile or
slow server costs no more than it would the backend itself. A server that answers neither way
is taken for A1111, whose preflight then says what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping

from sdbatch.backends.base import Backend, Connection
from sdbatch.errors import UsageError
from sdbatch.job.loader import Job

# server.type -> the module whose BACKEND implements it. A new kind adds a line here, a
# package beside a1111/, and its name to the schema's server.type enum.
KINDS = {
    "a1111": "sdbatch.backends.a1111.connect",
    "comfyui": "sdbatch.backends.comfyui.connect",
}
DETECT_TIMEOUT = 10.0


def _backend(kind: str) -> Backend:
    if kind not in KINDS:  # the schema's enum stops this first; a direct caller may not
        raise UsageError(f"unknown server type {kind!r}; known: {', '.join(sorted(KINDS))}")
    backend: Backend = importlib.import_module(KINDS[kind]).BACKEND
    return backend


class Detect:
    """`Backend` for a job without `server.type`: asks each server what it is, then hands the
    job, its type now set, to that kind's backend."""

    name = "detect"

    def connect(
        self,
        job: Job,
        *,
        auth: tuple[str, str] | None,
        preflight: bool,
        environ: Mapping[str, str],
    ) -> Connection:
        from sdbatch.backends.comfyui.facts import server_kind
        from sdbatch.backends.servers import open_servers

        opened = open_servers(job.server, auth=auth, environ=environ)
        timeout = min(job.server.timeout, DETECT_TIMEOUT)
        asked = {
            url: server_kind(url, session, timeout=timeout)
            for url, session in opened.sessions.items()
        }
        for session in opened.sessions.values():
            session.close()
        # One that does not answer is left to the backend (it leaves such a server out, or
        # says none can be reached); with no answer at all, A1111's messages are the ones.
        kinds = {url: kind for url, kind in asked.items() if kind is not None}
        if len(set(kinds.values())) > 1:
            listed = ", ".join(f"{url} ({kind})" for url, kind in kinds.items())
            raise UsageError(
                f"the job's servers are of two kinds: {listed}; one run uses one kind "
                "(set server.type to say which)"
            )
        kind = next(iter(kinds.values()), "a1111")
        # Waited for already: the backend's own open_servers need not wait again.
        server = dataclasses.replace(job.server, type=kind, wait=0)
        return _backend(kind).connect(
            dataclasses.replace(job, server=server),
            auth=auth,
            preflight=preflight,
            environ=environ,
        )


def backend_for(job: Job) -> Backend:
    kind = job.server.type
    if kind is None and job.workflow is not None:
        kind = "comfyui"  # a ComfyUI workflow runs on ComfyUI only
    return Detect() if kind is None else _backend(kind)
