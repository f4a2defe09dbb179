"""The HTTP session each webui gets: credentials, proxy headers and TLS settings, and nothing of
them anywhere else. Secrets come from the environment or the command line (`auth` reads them),
go into the session's headers, and are never logged, recorded or shown in a message.

Entry point: `make_session(server, auth=...) -> requests.Session` (an `ApiSession`: same-origin
redirects only, `server.verify` over REQUESTS_CA_BUNDLE, the run's answer limit);
`generation_headers(server)` adds what only txt2img requests send. Every secret is registered
with `redact` here, so no text a server sends back can carry it into a record.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from sdbatch.backends.auth import AUTH_ENV
from sdbatch.backends.fetch import DEFAULT_MAX_RESPONSE_BYTES, CrossOriginRedirect
from sdbatch.backends.redact import guard_log, redact, remember
from sdbatch.backends.watchdog import WatchedAdapter
from sdbatch.errors import UsageError
from sdbatch.job.loader import ServerConfig

# Two request threads per webui, a /progress poll and an interrupt may all be open at once.
POOL_SIZE = 8
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field-name
_SECRET_NAME = re.compile(r"(?i)auth|token|key|secret|cookie|pass")


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
    """Credentials in a URL would end up in every message that names the server; a port out
    of range would fail deep inside the first request. Neither is echoed with its password."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{redact(url)!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise UsageError(f"put credentials in --api-auth or {AUTH_ENV}, not in the URL")
    try:
        parts.port  # noqa: B018 (a property that validates)
    except ValueError:
        raise UsageError(f"{redact(url)!r}: the port must be a number from 1 to 65535") from None
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


class ApiSession(requests.Session):
    """A session that follows a redirect only within the server's origin, lets `server.verify`
    win over REQUESTS_CA_BUNDLE, and carries the run's answer limit (`fetch`)."""

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        # requests drops Authorization on a change of host or port (not on http -> https),
        # but keeps custom headers (a proxy token) on any change. Rather than strip some and
        # send the request on without its credentials, which a webui refuses anyway, a redirect
        # to another origin is not followed at all.
        here, there = _origin(response.request.url), _origin(prepared_request.url)
        if here != there:
            went, to = _show(response.request.url), _show(prepared_request.url)
            raise CrossOriginRedirect(
                f"the server redirected {went} to {to}, "
                "another origin; sdbatch does not follow it, so no credentials go there "
                "(point server.url at the new address if it is right)"
            )
        super().rebuild_auth(prepared_request, response)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the session's verify, even
        # `False` or a bundle of the job's. `true` means "the default trust store", which those
        # variables are there to set; anything else the job chose itself.
        if verify is None and self.verify is not True:
            settings["verify"] = self.verify
        return settings


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _show(url: str) -> str:
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.netloc}{parts.path}")


def check_verify(verify: bool | str) -> None:
    """A CA bundle path that is not there would fail deep inside the first https request."""
    if isinstance(verify, str) and not os.path.exists(verify):
        raise UsageError(f"server.verify: no CA bundle at {verify!r} (a file or directory)")


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise UsageError(f"server.headers: {name!r} is not a valid HTTP header name")
    if "\r" in value or "\n" in value or "\0" in value:
        raise UsageError(
            f"server.headers.{name}: the value holds a line break (CR/LF) or NUL; nothing was sent"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise UsageError(
            f"server.headers.{name}: HTTP headers carry Latin-1 text only; this value has "
            "other characters"
        ) from None


def check_auth(auth: tuple[str, str] | None) -> None:
    """The webui's --api-auth is FastAPI's HTTPBasic, which decodes the credentials as ASCII:
    anything else could never log in, so it is refused here (not echoed)."""
    if auth is None:
        return
    for part, text in zip(("user", "password"), auth, strict=True):
        if not text.isascii() or any(c in text for c in "\r\n\0"):
            raise UsageError(
                f"--api-auth / {AUTH_ENV}: the {part} holds a character the webui's HTTP Basic "
                "auth cannot take (it accepts ASCII only, no line breaks)"
            )


def make_session(
    server: ServerConfig,
    *,
    auth: tuple[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> requests.Session:
    """A session for one webui. Raises UsageError (exit 2, nothing sent) for credentials or
    headers that cannot go on the wire, or a CA bundle that is not there."""
    check_verify(server.verify)
    check_auth(auth)
    headers = expand_headers(server.headers, environ)
    for name, value in headers.items():
        _check_header(name, value)
    _remember_secrets(server.headers, headers, auth, environ)
    guard_log()
    session = ApiSession()
    session.max_response_bytes = max_response_bytes
    adapter = WatchedAdapter(pool_maxsize=max(POOL_SIZE, server.concurrency + 4))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Sent up front: the webui drops WWW-Authenticate from its 401, so requests' usual
    # challenge-and-retry would never happen.
    if auth is not None:
        session.auth = requests.auth.HTTPBasicAuth(*auth)
    session.headers.update(headers)
    session.verify = server.verify
    return session


def _remember_secrets(
    written: Mapping[str, str],
    sent: Mapping[str, str],
    auth: tuple[str, str] | None,
    environ: Mapping[str, str],
) -> None:
    """Register what must never be recorded: the password and its Basic token, every header
    value that came from the environment (and each variable's value alone), and the values of
    credential-like headers."""
    secrets: list[str] = []
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        secrets += [auth[1], token]
    for name, value in sent.items():
        names = _ENV_REF.findall(written[name])
        if names or _SECRET_NAME.search(name):
            secrets += [value, *value.split()[1:]]  # "Bearer TOKEN": the token alone too
            secrets += [environ[n] for n in names]
    remember(*secrets)
