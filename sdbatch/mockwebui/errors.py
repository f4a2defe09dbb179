"""The error bodies the stand-in webui answers with, as exceptions the handler renders.

Two shapes exist (a1111-api.md §3): the webui's own `{error, detail, body, errors}` for
exceptions and `HTTPException`s, and FastAPI's `{"detail": ...}` for routing and validation.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than 200, with the exact JSON body to send."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(f"HTTP {status}: {payload!r}")
        self.status = status
        self.payload = payload
        self.fault: str | None = None  # the injected fault behind it, for the request log


def webui_exception(error: str, message: str, status: int = 500) -> ApiError:
    """An exception caught by A1111's `api_middleware` (e.g. OutOfMemoryError)."""
    return ApiError(status, {"error": error, "detail": "", "body": "", "errors": message})


def http_exception(status: int, detail: str) -> ApiError:
    """An A1111 `HTTPException`: `detail` set and, with the pinned starlette, `errors` empty."""
    return ApiError(status, {"error": "HTTPException", "detail": detail, "body": "", "errors": ""})


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not Found"})


def method_not_allowed() -> ApiError:
    return ApiError(405, {"detail": "Method Not Allowed"})


class Dropped(Exception):
    """Close the connection without any answer (an injected reset, or the server stopping)."""
