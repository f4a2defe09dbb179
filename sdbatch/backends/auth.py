"""Where a webui's HTTP Basic credentials come from: `--api-auth USER:PASS` or `AUTH_ENV`.

Kept apart from `session` and free of third-party imports so the cli can name the variable in
its `--help` without importing requests. Entry point: `parse_auth(value) -> (user, password)`.
"""

from __future__ import annotations

from sdbatch.errors import UsageError

AUTH_ENV = "SDBATCH_API_AUTH"


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`user:pass` (the webui's --api-auth form) into a pair; the password may contain ':'."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise UsageError(f"--api-auth / {AUTH_ENV} must look like USER:PASSWORD")
    return user, password
