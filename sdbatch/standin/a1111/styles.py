"""How each webui renders a `WebuiError` (an exception or HTTPException) on the wire.

- A1111 (a1111-api.md §3): `handle_exception` for both, `{error, detail, body, errors}`, and the
  handler drops `e.headers` (no WWW-Authenticate on a 401).
- Forge (§8): `api_middleware` is commented out, so HTTPExceptions get FastAPI's default
  `{"detail": ...}` with their headers, and other exceptions Forge's `_handle_exception`
  `{error, detail: "", body: "", message}`.
- SD.Next (§8, modules/api/middleware.py): `{error, code, detail, body, errors}` where `errors`
  is `str(e)` (newer starlette: "404: Sampler not found"); a TypeError is answered with the bare
  message as a JSON string; 401s say "Unauthorized".
"""

from __future__ import annotations

from typing import Any

from sdbatch.standin.a1111.errors import ApiError, WebuiError

Rendered = tuple[Any, dict[str, str]]


class ErrorStyle:
    """A1111 v1.x: the default rendering, as `WebuiError.payload` already holds it."""

    def render(self, exc: ApiError) -> Rendered:
        if isinstance(exc, WebuiError):
            return self.webui(exc)
        return exc.payload, {}

    def webui(self, exc: WebuiError) -> Rendered:
        return exc.payload, {}


class ForgeErrors(ErrorStyle):
    def webui(self, exc: WebuiError) -> Rendered:
        if exc.http:
            return {"detail": exc.detail}, dict(exc.headers)
        return {"error": exc.error, "detail": "", "body": "", "message": exc.message}, {}


class SDNextErrors(ErrorStyle):
    def webui(self, exc: WebuiError) -> Rendered:
        if exc.error == "TypeError":
            return exc.message, {}
        detail = "Unauthorized" if exc.status == 401 else exc.detail
        errors = f"{exc.status}: {detail}" if exc.http else exc.message
        body = {
            "error": exc.error,
            "code": exc.status,
            "detail": detail,
            "body": "",
            "errors": errors,
        }
        return body, {}


A1111 = ErrorStyle()
FORGE = ForgeErrors()
SDNEXT = SDNextErrors()
