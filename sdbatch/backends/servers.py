"""What every backend's `connect` does first, whatever the server kind.

Entry point: `open_servers(server, auth=..., environ=...) -> Opened`: each URL checked (no
credentials in it, a valid port), the run's limits read, one session per server (auth, headers,
TLS, the response cap), and `server.wait` honoured. One place, so a new safety rule reaches
every kind of server at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import requests

from sdbatch.backends.a1111.wait import wait_for_server  # any HTTP answer counts: kind-neutral
from sdbatch.backends.limits import Limits, limits_for
from sdbatch.backends.session import check_url, make_session
from sdbatch.job.loader import ServerConfig


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
