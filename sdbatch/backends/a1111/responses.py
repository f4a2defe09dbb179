"""What the webui answered: the txt2img response contract, and error bodies in words.

Entry point: `decode(response) -> list[GeneratedImage]`, run on the writer's thread. Also the
webui's error bodies in words (`server_message`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import requests

from sdbatch.backends.a1111.infotext import parse_infotext
from sdbatch.backends.base import DecodeError, GeneratedImage, Response

_PROMPTS = ("Prompt", "Negative prompt")  # in the payload already


def server_message(response: requests.Response) -> str:
    """The webui's own words for an error response, whichever of its body shapes it used."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}: {text[:300] or response.reason}"
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI's 422 validation list
            parts = []
            for err in detail:
                loc = [str(x) for x in err.get("loc", []) if x != "body"]
                parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', '')}")
            return f"HTTP {response.status_code}: " + "; ".join(parts)
        # A1111 {error, detail, body, errors}; Forge says `message` instead of `errors`.
        words = body.get("errors") or body.get("message") or detail or ""
        kind = body.get("error")
        text = f"{kind}: {words}" if kind and words else str(kind or words)
        return f"HTTP {response.status_code}: {text or response.reason}"
    return f"HTTP {response.status_code}: {body}"  # SD.Next answers a TypeError with a bare string


def error_class(response: requests.Response) -> str | None:
    """The Python exception class the webui names in a 500 body (`{"error": "TypeError"}`)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def decode(response: Response) -> list[GeneratedImage]:
    """Apply the response contract: `info` is a JSON string, and the real images are
    `images[index_of_first_image : index_of_first_image + batch_size*n_iter]` (a grid may sit
    before them, extension images after them), each with its seed from `info.all_seeds`.
    """
    try:
        body = json.loads(response.body)
        raw_info = body.get("info")
        info = json.loads(raw_info) if isinstance(raw_info, str) else (raw_info or {})
        images = body.get("images") or []
    except (ValueError, AttributeError) as exc:
        raise DecodeError(f"the response is not txt2img JSON: {exc}") from exc
    if not isinstance(info, dict) or not isinstance(images, list):
        raise DecodeError("the response has no usable `info` / `images`")
    sent = response.payload
    first = int(info.get("index_of_first_image") or 0)
    expected = int(sent.get("batch_size") or 1) * int(sent.get("n_iter") or 1)
    seeds = info.get("all_seeds") or []
    infotexts = info.get("infotexts") or []
    used = _used(info)
    result = []
    for i, encoded in enumerate(images[first : first + expected]):
        try:
            data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, AttributeError) as exc:
            raise DecodeError(f"image {i} is not valid base64: {exc}") from exc
        seed = int(seeds[i]) if i < len(seeds) else int(sent["seed"]) + i
        # infotexts run parallel to `images`, the grid's included.
        text = infotexts[first + i] if first + i < len(infotexts) else None
        # The row keeps every parameter the webui reports, so it alone says what made it.
        params = {k: v for k, v in parse_infotext(text).items() if k not in _PROMPTS}
        image = GeneratedImage(
            response.first_image + i, data, seed, sent, info, text, {**used, "parameters": params}
        )
        result.append(image)
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
