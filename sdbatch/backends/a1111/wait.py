"""Is the webui up, and is it busy? For `--wait S` before a run, and for the worker after a
request timed out.

Entry point: `wait_for_server(url, seconds)`; `webui_busy(session, url)` is the worker's probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
import tenacity

from sdbatch.backends.fetch import fetch
from sdbatch.errors import ServerUnreachableError

_log = logging.getLogger("sdbatch")

# Cheap and lock-free: /progress answers even while a job runs (a1111-api.md §4, §5), exists in
# webui and --nowebui mode alike, and skip_current_image spares the live-preview encoding.
PROBE = "/sdapi/v1/progress?skip_current_image=true"
PROBE_TIMEOUT = 5.0
POLL_INTERVAL = 1.0  # between probes while waiting for the webui to come up
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
    """Return as soon as the webui at `url` answers; raise ServerUnreachableError after
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
            log(f"waiting for the webui at {url} ({waited:.0f} s so far)")

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
            f"the webui at {url} did not answer within {seconds:g} s"
        ) from exc.last_attempt.exception()
    finally:
        if session is None:
            http.close()


def _state(session: requests.Session, url: str) -> dict[str, Any] | None:
    """/progress's `state`, or None when it cannot be had."""
    try:
        response = fetch(session, "GET", url.rstrip("/") + PROBE, timeout=PROBE_TIMEOUT)
        state = response.json().get("state") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return state if isinstance(state, dict) else None


def webui_busy(session: requests.Session, url: str) -> bool:
    """True while the webui runs a job (`state.job_count != 0`: -1 while a job starts, N while
    it runs, 0 when idle). False when /progress cannot tell: waiting would be blind."""
    state = _state(session, url)
    return state is not None and state.get("job_count", 0) != 0


def sampling_step(session: requests.Session, url: str) -> str | None:
    """ "step 12/25" while the webui samples, for the progress bar; None when idle or unknown."""
    state = _state(session, url)
    if not state or not state.get("job_count"):
        return None
    step, steps = state.get("sampling_step"), state.get("sampling_steps")
    counted = isinstance(step, int) and isinstance(steps, int) and steps > 0
    return f"step {step}/{steps}" if counted else None
