"""What the webui answered: the txt2img response contract, and error bodies in words.

Entry point: `decode(response, max_pixels=...) -> list[GeneratedImage]`, run on the writer's
thread. Every part of the answer is checked before it is trusted (a proxy, a broken extension
or a hostile server may send anything): `info` must be JSON, the seeds integers, the index of
the first image in range, every planned image present and decoding in full; anything else is a
`DecodeError` naming what is wrong, which the writer records as the payload's failed row. Also
the webui's error bodies in words (`server_message`), summarised and redacted.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from sdbatch.backends.a1111.infotext import parse_infotext
from sdbatch.backends.base import DecodeError, GeneratedImage, Response
from sdbatch.backends.fetch import Answer
from sdbatch.backends.imagecheck import check_image
from sdbatch.backends.limits import DEFAULT_MAX_IMAGE_PIXELS
from sdbatch.backends.redact import SHOWN, redact, scrub, summarise

_PROMPTS = ("Prompt", "Negative prompt")  # in the payload already


def _bounded(value: Any) -> str:
    return redact(" ".join(str(value).split()))[:SHOWN]


def server_message(response: Answer) -> str:
    """The webui's own words for an error response, whichever of its body shapes it used."""
    code = response.status_code
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {code}: {summarise(response.content, response.reason)}"
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI's 422 validation list
            parts = []
            for err in detail[:10]:
                err = err if isinstance(err, dict) else {}
                loc = [str(x) for x in err.get("loc") or [] if x != "body"]
                parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', '')}")
            return f"HTTP {code}: " + _bounded("; ".join(parts))
        # A1111 {error, detail, body, errors}; Forge says `message` instead of `errors`.
        words = body.get("errors") or body.get("message") or detail or ""
        kind = body.get("error")
        text = f"{kind}: {words}" if kind and words else str(kind or words)
        return f"HTTP {code}: {_bounded(text or response.reason)}"
    return f"HTTP {code}: {_bounded(body)}"  # SD.Next answers a TypeError with a bare string


def error_class(response: Answer) -> str | None:
    """The Python exception class the webui names in a 500 body (`{"error": "TypeError"}`)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _contract(response: Response) -> tuple[dict[str, Any], list[Any], int]:
    """(info, images, index of the first image), each of the shape the contract promises."""
    try:
        body = json.loads(response.body)
    except ValueError:
        raise DecodeError(f"the answer is not JSON: {summarise(response.body)}") from None
    if not isinstance(body, dict):
        raise DecodeError(f"the answer is not a JSON object: {_bounded(body)}")
    raw_info = body.get("info")
    try:
        info = json.loads(raw_info) if isinstance(raw_info, str) else raw_info
    except ValueError:
        raise DecodeError(f"`info` is not JSON: {_bounded(raw_info)}") from None
    info = {} if info is None else info
    if not isinstance(info, dict):
        raise DecodeError(f"`info` is not a JSON object: {_bounded(info)}")
    # Everything of `info` may end up in a row (what the webui used, its infotext, mismatches).
    info = scrub(info)
    images = body.get("images")
    if not isinstance(images, list):
        raise DecodeError(f"the answer has no `images` list (it has {_bounded(images)})")
    first = info.get("index_of_first_image", 0)
    if not _integer(first) or not 0 <= first <= len(images):
        raise DecodeError(f"`info.index_of_first_image` is {_bounded(first)}, not an index")
    seeds = info.get("all_seeds") or []
    if not isinstance(seeds, list) or not all(_integer(s) for s in seeds):
        raise DecodeError(f"`info.all_seeds` is {_bounded(seeds)}, not a list of integers")
    texts = info.get("infotexts") or []
    if not isinstance(texts, list) or not all(t is None or isinstance(t, str) for t in texts):
        raise DecodeError(f"`info.infotexts` is {_bounded(texts)}, not a list of texts")
    return info, images, first


def decode(
    response: Response, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> list[GeneratedImage]:
    """Apply the response contract: `info` is a JSON string, and the real images are
    `images[index_of_first_image : index_of_first_image + batch_size*n_iter]` (a grid may sit
    before them, extension images after them), each with its seed from `info.all_seeds`.
    """
    info, images, first = _contract(response)
    sent = response.payload
    expected = int(sent.get("batch_size") or 1) * int(sent.get("n_iter") or 1)
    ours = images[first : first + expected]
    if len(ours) < expected:
        missing = [response.first_image + i for i in range(len(ours), expected)]
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DecodeError(
            f"the webui sent {len(ours)} of the {expected} images asked for (image(s) {shown} "
            "missing)"
        )
    seeds, infotexts, used = info.get("all_seeds") or [], info.get("infotexts") or [], _used(info)
    result = []
    for i, encoded in enumerate(ours):
        index = response.first_image + i
        name = f"image {index}"
        try:
            data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, AttributeError, ValueError) as exc:
            raise DecodeError(f"{name} is not valid base64: {_bounded(exc)}") from exc
        size = check_image(data, max_pixels=max_pixels, name=name)
        seed = int(seeds[i]) if i < len(seeds) else int(sent.get("seed") or -1) + i
        # infotexts run parallel to `images`, the grid's included.
        text = infotexts[first + i] if first + i < len(infotexts) else None
        # The row keeps every parameter the webui reports, so it alone says what made it.
        params = {k: v for k, v in parse_infotext(text).items() if k not in _PROMPTS}
        used_here = {**used, "parameters": params}
        result.append(GeneratedImage(index, data, seed, sent, info, text, used_here, size))
    return result


def _used(info: Mapping[str, Any]) -> dict[str, Any]:
    """What the webui says it used, under the manifest's names."""
    extra = info.get("extra_generation_params")
    extra = extra if isinstance(extra, dict) else {}
    return {
        "sampler_name": info.get("sampler_name"),
        # info has no scheduler key: the webui reports it only as "Schedule type".
        "scheduler": extra.get("Schedule type", "Automatic"),
        "sd_model_name": info.get("sd_model_name"),
        "sd_model_hash": info.get("sd_model_hash"),
        "server_version": info.get("version"),
    }
