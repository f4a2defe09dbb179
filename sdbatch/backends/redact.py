"""Secrets out of every text a server may have written: one `redact(text)` for all of it.

Entry point: `redact(text) -> str`; `summarise(body)` is a server's body as one bounded,
redacted line, for any kind of server. `remember(*values)` registers the secret values of a run
(the Basic-auth password and its token, header values taken from the environment, header
values of credential-like headers) when its sessions are built. Why one registry: a webui or
a proxy in front of it may echo the request back in an error body, and that text flows into
exception messages, manifest rows, the summary, the gallery and the log; redacting where the
text enters (server messages, exception texts) and once more on the way into the log is
simpler than tracking every path out.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from sdbatch.errors import hide_credentials

MASK = "***"
SHOWN = 300  # characters of a server's text that a message may carry
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]*>")
# Shorter values are left alone: masking every "ab" in every message would mangle the text
# and protect little (a secret that short is guessed faster than read).
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a secret's prefix never unmasks the rest


def remember(*values: str) -> None:
    """Register secret values; each is masked from then on, in every thread."""
    global _secrets
    fresh = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
    with _lock:
        _secrets = tuple(sorted(set(_secrets) | fresh, key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with every registered secret and every URL's userinfo replaced by `***`."""
    if "@" in text:
        text = hide_credentials(text)  # `scheme://user:password@host`, whoever registered it
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub(value: Any) -> Any:
    """A JSON value (a server's `info`) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets in every record of the logger it is on (the log file included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = RedactingFilter()


def guard_log(name: str = "sdbatch") -> None:
    """Put the filter on sdbatch's logger once."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def summarise(content: bytes, fallback: str = "") -> str:
    """A server's body in one bounded, redacted line: an HTML page by its title, any other
    text by its first line; never the page itself."""
    # Redacted before it is cut: a secret cut in two would no longer match.
    head = content[:65536]
    title = _TITLE.search(head)
    if title or head.lstrip()[:1] == b"<":
        words = title.group(1) if title else b""
        text = redact(" ".join(_TAGS.sub(" ", words.decode("utf-8", errors="replace")).split()))
        return "an HTML page" + (f" ({text[:SHOWN]!r})" if text else "")
    lines = head.decode("utf-8", errors="replace").strip().splitlines()
    first = redact(" ".join(lines[0].split())) if lines else ""
    more = " ..." if len(first) > SHOWN or len(lines) > 1 else ""
    return first[:SHOWN] + more if first else redact(fallback)
