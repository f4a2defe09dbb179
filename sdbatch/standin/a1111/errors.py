"""The error answers of the stand-in webui, as exceptions the HTTP handler renders.

Two kinds exist (a1111-api.md §3): fixed FastAPI bodies (`ApiError`: routing and validation,
`{"detail": ...}`) and errors that pass through the webui's own exception handling
(`WebuiError`: a Python exception or an `HTTPException`). How the second kind looks on the wire
differs per webui, so it stays semantic here and an `ErrorStyle` (behaviours.py) renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An answer other than 200, with the exact JSON body to send."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(f"HTTP {status}: {payload!r}")
        self.status = status
        self.payload = payload
        self.fault: str | None = None  # the injected fault behind it, for the request log


class WebuiError(ApiError):
    """An exception (`http=False`, e.g. OutOfMemoryError) or an `HTTPException` (`http=True`)
    as the webui's handlers see it. `payload` is the A1111 v1.10 rendering; other webuis
    render it through their ErrorStyle."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        http: bool,
        detail: str = "",
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.error, self.http, self.detail, self.message = error, http, detail, message
        self.headers: dict[str, str] = dict(headers or {})
        # With the pinned starlette 0.26.1 str(HTTPException) is "", hence `errors` empty.
        super().__init__(
            status,
            {"error": error, "detail": detail, "body": "", "errors": "" if http else message},
        )


def webui_exception(error: str, message: str, status: int = 500) -> WebuiError:
    """An exception caught by the webui's exception handling (e.g. OutOfMemoryError)."""
    return WebuiError(status, error, http=False, message=message)


def http_exception(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> WebuiError:
    """A webui `HTTPException(status, detail)`."""
    return WebuiError(status, "HTTPException", http=True, detail=detail, headers=headers)


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not Found"})


def method_not_allowed() -> ApiError:
    return ApiError(405, {"detail": "Method Not Allowed"})


class Dropped(Exception):
    """Close the connection without any answer (an injected reset, or the server stopping)."""
