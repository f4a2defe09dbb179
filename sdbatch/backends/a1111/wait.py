"""Is the webui busy? For the worker after a request timed out, and its progress bar.

Entry points: `webui_busy(session, url)`, `sampling_step(session, url)`; both read /progress
(the lock-free probe `backends.wait` also uses to see the server is up).
"""

from __future__ import annotations

from typing import Any

import requests

from sdbatch.backends.fetch import fetch

# Cheap and lock-free: /progress answers even while a job runs (a1111-api.md §4, §5), exists in
# webui and --nowebui mode alike, and skip_current_image spares the live-preview encoding.
from sdbatch.backends.wait import PROBE, PROBE_TIMEOUT


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
