"""How long to wait before the next attempt: what the server asked for, else backoff.

Entry point: `wait_before_retry(state) -> seconds`, the worker's tenacity `wait`;
`retry_after(answer)` reads the server's Retry-After for `attempt`. Why honour it: a 429 (a
proxy's rate limit) or a 503 that says when to come back is answered soonest, and most
politely, by coming back then; capped, so a server cannot park a run for a day.
"""

from __future__ import annotations

import email.utils
import time

import tenacity

from sdbatch.backends.fetch import Answer

# Exponential backoff with jitter between attempts, in seconds.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
# A server's Retry-After is honoured up to this many seconds; a longer one is cut to it.
RETRY_AFTER_MAX = 300.0

_BACKOFF = tenacity.wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX)


def retry_after(answer: Answer) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), None when absent or unreadable."""
    value = answer.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def wait_before_retry(state: tenacity.RetryCallState) -> float:
    """The Retry-After the failed attempt carried (`attempt.Transient.retry_after`), capped;
    else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, (int, float)):
        return min(max(float(asked), 0.0), RETRY_AFTER_MAX)
    return float(_BACKOFF(state))
