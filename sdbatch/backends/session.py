"""The HTTP session each webui gets: credentials, proxy headers and TLS settings, and nothing of
them anywhere else. Secrets come from the environment or the command line (`auth` reads them),
go into the session's headers, and are never logged, recorded or shown in a message.

Entry point: `make_session(server, auth=...) -> requests.Session`; `generation_headers(server)`
adds what only txt2img requests send.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from sdbatch.backends.auth import AUTH_ENV
from sdbatch.errors import UsageError
from sdbatch.job.loader import ServerConfig

# Two request threads per webui, a /progress poll and an interrupt may all be open at once.
POOL_SIZE = 8
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_headers(headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """`${VAR}` in a header value is taken from the environment, so a token needs no job file."""

    def value(name: str, text: str) -> str:
        def sub(match: re.Match[str]) -> str:
            if match[1] not in environ:
                raise UsageError(f"server.headers.{name} uses ${{{match[1]}}}, which is not set")
            return environ[match[1]]

        return _ENV_REF.sub(sub, text)

    return {name: value(name, text) for name, text in headers.items()}


def check_url(url: str) -> str:
    """Credentials in a URL would end up in every message that names the server."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise UsageError(f"put credentials in --api-auth or {AUTH_ENV}, not in the URL")
    return url


def generation_headers(server: ServerConfig) -> dict[str, str]:
    """Headers a txt2img POST sends on top of the session's.

    The webui gzips every answer of 1000 bytes or more at level 9. Its base64 PNGs barely shrink,
    and un-gzipping them took a large share of a request thread's time, so by default a
    generation asks for the body as it is; `server.gzip: true` is for a link slow enough that the
    saved bytes are worth it. Other requests keep requests' default: their answers are small. An
    Accept-Encoding the job sets in `server.headers` is an explicit choice and wins.
    """
    if server.gzip or any(name.lower() == "accept-encoding" for name in server.headers):
        return {}
    return {"Accept-Encoding": "identity"}


def make_session(
    server: ServerConfig,
    *,
    auth: tuple[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Sent up front: the webui drops WWW-Authenticate from its 401, so requests' usual
    # challenge-and-retry would never happen.
    if auth is not None:
        session.auth = requests.auth.HTTPBasicAuth(*auth)
    session.headers.update(expand_headers(server.headers, environ))
    session.verify = server.verify
    return session
