"""How much a server's answer may weigh, and how many requests a run may have open at a webui.

Entry point: `limits_for(server, environ) -> Limits`. Each limit is a setting with a default:
`server.max_response_bytes` / `server.max_image_pixels` in the job file, else the environment
(`SDBATCH_MAX_RESPONSE_BYTES`, `SDBATCH_MAX_IMAGE_PIXELS`), else the default here. Why limits
at all: every answer is held in memory and every image decoded, so a broken or hostile server
must not be able to make either unbounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdbatch.backends.fetch import DEFAULT_MAX_RESPONSE_BYTES
from sdbatch.errors import UsageError
from sdbatch.job.loader import ServerConfig

# 8192 x 8192: above any txt2img/hires size the webui allows, below what would take gigabytes
# to decode. Pillow's own bomb check (about 89 megapixels warns, twice that refuses) stays on.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# Request threads per webui are `concurrency + 1`; each webui runs one job at a time, so more
# than a few only queue at its lock. A cap in code whatever the job file says.
MAX_CONCURRENCY = 32
_ENV = {
    "max_response_bytes": "SDBATCH_MAX_RESPONSE_BYTES",
    "max_image_pixels": "SDBATCH_MAX_IMAGE_PIXELS",
}


@dataclass(frozen=True)
class Limits:
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def _setting(server: ServerConfig, name: str, environ: Mapping[str, str], default: int) -> int:
    value: object = getattr(server, name, None)
    where = f"server.{name}"
    if value is None and _ENV[name] in environ:
        value, where = environ[_ENV[name]].strip(), _ENV[name]
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise UsageError(f"{where} must be a whole number of bytes/pixels, not {value!r}") from None
    if number < 1:
        raise UsageError(f"{where} must be 1 or more, not {number}")
    return number


def limits_for(server: ServerConfig, environ: Mapping[str, str]) -> Limits:
    """The run's limits; UsageError (exit 2) for a value that is no positive whole number, or
    for a concurrency above MAX_CONCURRENCY."""
    if server.concurrency > MAX_CONCURRENCY:
        raise UsageError(
            f"server.concurrency {server.concurrency} is more than sdbatch allows "
            f"({MAX_CONCURRENCY}): a webui runs one job at a time, so more only queue"
        )
    return Limits(
        max_response_bytes=_setting(
            server, "max_response_bytes", environ, DEFAULT_MAX_RESPONSE_BYTES
        ),
        max_image_pixels=_setting(server, "max_image_pixels", environ, DEFAULT_MAX_IMAGE_PIXELS),
    )
