"""GET one of the webui's lists (samplers, models, options, LoRAs...) and trust none of it
unchecked.

Entry point: `get_json(session, url, path, timeout=...) -> Any`, and `reading(url, path)`, a
context in which a list of the wrong shape (a missing key, a number where a list belongs)
becomes a `ServerError` naming the endpoint, instead of a KeyError deep in preflight. Why: a
proxy's HTML page, an extension that broke a route or a server that is not a webui at all
answer these too, and the user needs to know which answer was wrong, not a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import requests

from sdbatch.backends.a1111.responses import server_message
from sdbatch.backends.fetch import (
    NO_API_HINT,
    AnswerTooLarge,
    CrossOriginRedirect,
    failure,
    fetch,
)
from sdbatch.backends.redact import summarise
from sdbatch.errors import ServerError, ServerUnreachableError

REQUIRED = object()  # get_json's `missing` for a route every webui has


def get_json(
    session: requests.Session,
    url: str,
    path: str,
    *,
    timeout: float,
    missing: Any = REQUIRED,
    method: str = "GET",
) -> Any:
    """The JSON of `METHOD /sdapi/v1/PATH`; `missing` when the route is not there (404), if
    given. ServerUnreachableError when the webui cannot be reached; ServerError when it
    answers with an error, or with something that is not JSON."""
    endpoint = f"{method} /sdapi/v1/{path}"
    try:
        answer = fetch(session, method, f"{url.rstrip('/')}/sdapi/v1/{path}", timeout=timeout)
    except (AnswerTooLarge, CrossOriginRedirect) as exc:
        raise ServerError(f"{url}: {endpoint}: {failure(exc)}") from exc
    except requests.RequestException as exc:
        reason = failure(exc, timeout)
        raise ServerUnreachableError(f"{url}: cannot reach the webui: {reason}") from exc
    if answer.status_code == 404 and missing is not REQUIRED:
        return missing
    if answer.status_code != 200:
        hint = f" ({NO_API_HINT})" if answer.status_code == 404 else ""
        raise ServerError(f"{url}: {endpoint}: {server_message(answer)}{hint}")
    try:
        return answer.json()
    except ValueError:
        raise ServerError(
            f"{url}: {endpoint}: the answer is not JSON ({summarise(answer.content)}); is "
            f"{url} a Stable Diffusion webui?"
        ) from None


@contextlib.contextmanager
def reading(url: str, path: str) -> Iterator[None]:
    """Turn a list of the wrong shape into a ServerError naming `GET /sdapi/v1/PATH`."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        kind = type(exc).__name__
        raise ServerError(
            f"{url}: GET /sdapi/v1/{path}: the answer is not shaped as a webui's ({kind}: "
            f"{str(exc)[:100]})"
        ) from exc
