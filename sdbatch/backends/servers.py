"""What every backend's `connect` does first, whatever the server kind.

Entry point: `open_servers(server, auth=..., environ=...) -> Opened`: each URL checked (no
credentials in it, a valid port), the run's limits read, one session per server (auth, headers,
TLS, the response cap), and `server.wait` honoured. One place, so a new safety rule reaches
every kind of server at once. Then `reachable(urls, inspect)`: what each server that answers
offers, the others left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import requests

from sdbatch.backends.limits import Limits, limits_for
from sdbatch.backends.session import check_url, make_session
from sdbatch.backends.wait import wait_for_server
from sdbatch.errors import ServerUnreachableError
from sdbatch.job.loader import ServerConfig

log = logging.getLogger("sdbatch")
Facts = TypeVar("Facts")


@dataclass(frozen=True)
class Opened:
    urls: list[str]
    limits: Limits
    sessions: dict[str, requests.Session]


def open_servers(
    server: ServerConfig, *, auth: tuple[str, str] | None, environ: Mapping[str, str]
) -> Opened:
    urls = [check_url(url) for url in server.all_urls]
    limits = limits_for(server, environ)
    sessions = {
        url: make_session(
            server, auth=auth, environ=environ, max_response_bytes=limits.max_response_bytes
        )
        for url in urls
    }
    if server.wait > 0:
        for url in urls:
            wait_for_server(url, server.wait, session=sessions[url])
    return Opened(urls, limits, sessions)


def reachable(urls: list[str], inspect: Callable[[str], Facts]) -> list[Facts]:
    """`inspect(url)` of every server that answers. Of several, one that cannot be reached is
    left out with an error naming it, and the run goes on with the others; only when none
    answers is it ServerUnreachableError (exit 3)."""
    found: list[Facts] = []
    errors: list[str] = []
    for url in urls:
        try:
            found.append(inspect(url))
        except ServerUnreachableError as exc:
            errors.append(str(exc))
            if len(urls) > 1:
                log.error("leaving out %s: %s", url, exc)
    if not found:
        raise ServerUnreachableError("; ".join(errors))
    return found
