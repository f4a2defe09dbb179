"""Answers a broken or hostile server gives, for tests of the client's distrust.

Entry points: `tampered(name, answer, headers, retry_after)`, which turns the txt2img answer the
stand-in made into the one named (`FaultSettings.tamper`, `tamper_next` times), and
`route_answer(answers, path)`, a fixed raw answer for any route (`FaultSettings.
route_answers`: an HTML page for /sdapi/v1/options, a 404 as without --api, a redirect...).
Both produce a `RawAnswer` where the body is no JSON at all or the framing itself is wrong (a
Content-Length the body never meets, a gzip bomb); server.py sends that as it is.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>\n"
    b"<h1>Bad Gateway</h1><p>" + b"The proxy could not reach the upstream server. " * 200 + b"</p>"
    b"\n</body></html>\n"
)


@dataclass(frozen=True)
class RawAnswer:
    """Bytes sent as they are. `declared_length` claims a Content-Length other than the body's
    (the connection is closed after the body, so the client sees it cut short)."""

    status: int
    content_type: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    declared_length: int | None = None


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    # Rows of zeros compress to almost nothing: a few KB inflating to gigabytes.
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def _images(answer: dict[str, Any], change: Callable[[bytes], bytes]) -> dict[str, Any]:
    images = [base64.b64encode(change(base64.b64decode(i))).decode() for i in answer["images"]]
    return {**answer, "images": images}


def _info(answer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    info = json.loads(answer["info"])
    return {**answer, "info": json.dumps({**info, **changes})}


def _cut(answer: dict[str, Any]) -> RawAnswer:
    data = json.dumps(answer).encode()
    return RawAnswer(200, "application/json", data[: len(data) // 2], declared_length=len(data))


def _gzip_bomb(answer: dict[str, Any]) -> RawAnswer:
    # 64 MB of spaces (valid JSON whitespace) before the answer: about 64 KB on the wire, so a
    # client without a limit takes it as a good answer. Compressed a MB at a time.
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    spaces = b" " * (1024 * 1024)
    parts = [packer.compress(spaces) for _ in range(64)]
    parts += [packer.compress(json.dumps(answer).encode()), packer.flush()]
    return RawAnswer(200, "application/json", b"".join(parts), {"Content-Encoding": "gzip"})


def _echo(answer: dict[str, Any], headers: Mapping[str, str]) -> RawAnswer:
    # Some proxies and debug error pages print the request back, credentials and all.
    body = {"error": "RuntimeError", "errors": f"bad request; headers were {dict(headers)}"}
    return RawAnswer(500, "application/json", json.dumps(body).encode())


_TAMPERS: dict[str, Callable[[dict[str, Any], Mapping[str, str], int], Any]] = {
    "truncate_png": lambda a, h, r: _images(a, lambda d: d[: len(d) // 2]),
    "not_an_image": lambda a, h, r: _images(a, lambda d: b"<html><body>no</body></html>"),
    "bomb_png": lambda a, h, r: _images(a, lambda d: _png_claiming(30000, 30000)),
    "no_images": lambda a, h, r: {k: v for k, v in a.items() if k != "images"},
    "null_images": lambda a, h, r: {**a, "images": None},
    "empty_images": lambda a, h, r: {**a, "images": []},
    "short_images": lambda a, h, r: {**a, "images": a["images"][:-1]},
    "info_garbage": lambda a, h, r: {**a, "info": "{this is not json"},
    "seeds_garbage": lambda a, h, r: _info(a, all_seeds=["lots", {"x": 1}]),
    "index_garbage": lambda a, h, r: _info(a, index_of_first_image="first"),
    "html": lambda a, h, r: RawAnswer(200, "text/html", HTML_PAGE),
    "text": lambda a, h, r: RawAnswer(200, "text/plain", b"OK\nall good\n"),
    "rate_limit": lambda a, h, r: RawAnswer(
        429, "text/plain", b"Too Many Requests", {"Retry-After": str(r)}
    ),
    "no_api": lambda a, h, r: RawAnswer(404, "application/json", b'{"detail":"Not Found"}'),
    "cut": lambda a, h, r: _cut(a),
    "gzip_bomb": lambda a, h, r: _gzip_bomb(a),
    "echo_headers": lambda a, h, r: _echo(a, h),
    "echo_headers_in_info": lambda a, h, r: _info(a, sd_model_name=f"model {dict(h)}"),
}
TAMPER_NAMES = frozenset(_TAMPERS)


def tampered(
    name: str, answer: dict[str, Any], headers: Mapping[str, str], retry_after: int
) -> dict[str, Any] | RawAnswer:
    """The answer `name` makes of the stand-in's own `answer` to a request with `headers`."""
    result: dict[str, Any] | RawAnswer = _TAMPERS[name](answer, headers, retry_after)
    return result


def route_answer(answers: Mapping[str, Sequence[Any]], path: str) -> RawAnswer | None:
    """The fixed answer set for `path`: [status, content type, body text, {headers}]."""
    spec = answers.get(path)
    if spec is None:
        return None
    status, content_type, body, *rest = spec
    headers = rest[0] if rest else {}
    return RawAnswer(int(status), str(content_type), str(body).encode(), dict(headers))
