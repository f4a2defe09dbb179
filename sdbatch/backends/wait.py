"""Wait for a server to come up: `--wait S` / `server.wait` before a run, for any kind.

Entry point: `wait_for_server(url, seconds)`. Any HTTP answer to the probe counts, even a 404:
the server is up, and what is wrong with the request is the run's business, not this wait's.
So one probe serves every kind: A1111's lock-free /progress, which ComfyUI answers with a
404 as quickly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
import tenacity

from sdbatch.errors import ServerUnreachableError

_log = logging.getLogger("sdbatch")

PROBE = "/sdapi/v1/progress?skip_current_image=true"
PROBE_TIMEOUT = 5.0
POLL_INTERVAL = 1.0  # between probes while waiting for the server to come up
LOG_EVERY = 10.0


def wait_for_server(
    url: str,
    seconds: float,
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], Any] = _log.info,
) -> None:
    """Return as soon as the server at `url` answers; raise ServerUnreachableError after
    `seconds`. Any HTTP answer counts, even a 401 or 404: the server is up, and what is wrong
    with the request is the run's business, not this wait's.
    """
    probe_url = url.rstrip("/") + PROBE
    http = session or requests.Session()
    start = clock()
    logged_at: float | None = None

    def remaining() -> float:
        return seconds - (clock() - start)

    def probe() -> None:
        # Any answer will do: its body is never read, and a redirect is an answer too.
        answer = http.get(
            probe_url,
            timeout=max(0.1, min(PROBE_TIMEOUT, remaining())),
            stream=True,
            allow_redirects=False,
        )
        answer.close()

    def report(state: tenacity.RetryCallState) -> None:
        nonlocal logged_at
        waited = clock() - start
        if logged_at is None or waited - logged_at >= LOG_EVERY:
            logged_at = waited
            log(f"waiting for the server at {url} ({waited:.0f} s so far)")

    # tenacity's own stop_after_delay reads time.monotonic itself; these read the injected
    # clock, so a test's fake sleep and clock are honoured, and the last probe lands on the
    # deadline instead of a whole interval past it.
    retrying = tenacity.Retrying(
        stop=lambda state: remaining() <= 0,
        wait=lambda state: max(0.0, min(POLL_INTERVAL, remaining())),
        retry=tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
        sleep=sleep,
        before_sleep=report,
    )
    try:
        retrying(probe)
    except tenacity.RetryError as exc:
        raise ServerUnreachableError(
            f"the server at {url} did not answer within {seconds:g} s"
        ) from exc.last_attempt.exception()
    finally:
        if session is None:
            http.close()
