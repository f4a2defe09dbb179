"""The recorded answers of the real webui (tests/data/real-a1111/) and how a stand-in's answer
is held to one: shared by test_golden.py (txt2img and the rest) and test_img2img.py."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from sdbatch.standin.a1111 import MockWebui

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "real-a1111" / "exchanges.json"
REAL: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
# The first captures ran on random-weight models the later setup renamed: same roles.
RENAMED = {"randomA": "tinyC", "6d29f442ab": "587597b8f4", "randomB": "tinyD"}
# Values drawn at random or stamped with the time: compared by type only.
DRAWN = {"subseed", "all_subseeds", "job_timestamp"}


def normal(text: Any) -> Any:
    """Infotext as both servers write it: `Version: 1.10.1` without a git checkout (OBSERVED
    12), the old model names mapped."""
    if not isinstance(text, str):
        return text
    text = re.sub(r"(Version: |^)v?1\.10\.1$", r"\g<1>v1.10.1", text, flags=re.M)
    text = re.sub(r"Version: v?1\.10\.1", "Version: v1.10.1", text)
    for old, new in RENAMED.items():
        text = text.replace(old, new)
    return text


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively: what a client may rely on besides the values."""
    if isinstance(value, Mapping):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (type(value).__name__)
    )


def echoed(parameters: Any) -> Any:
    """The `parameters` echo as trim.py stores it: img2img's pictures, when echoed, as a count."""
    if isinstance(parameters, dict) and isinstance(parameters.get("init_images"), list):
        return {**parameters, "init_images": len(parameters["init_images"])}
    return parameters


def send(server: MockWebui, recorded: Mapping[str, Any]) -> requests.Response:
    request = recorded["request"]
    return requests.request(
        request["method"], server.url + request["path"], json=request["json"], timeout=60
    )


def pngs(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for b64 in body.get("images") or []:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
            found.append(
                {"format": img.format, "size": list(img.size), "mode": img.mode, "text": img.info}
            )
    return found


def agrees(recorded: Mapping[str, Any], response: requests.Response) -> None:
    """The stand-in's answer against the real one, field by field; a seed the server drew is
    compared by type (and its pattern in `test_drawn_seeds_follow_the_real_pattern`)."""
    drawn = (recorded["request"]["json"] or {}).get("seed", -1) in (-1, None)
    skip = DRAWN | ({"seed", "all_seeds", "infotexts"} if drawn else set())

    def text(value: Any) -> Any:
        value = normal(value)
        return re.sub(r"Seed: \d+", "Seed: N", value) if drawn and isinstance(value, str) else value

    assert response.status_code == recorded["status"]
    assert response.headers["content-type"] == recorded["content_type"]
    body, real = response.json(), recorded["body"]
    if "image_count" not in recorded:  # errors and plain JSON answers: the very same body
        assert body == real
        return
    assert len(body["images"]) == recorded["image_count"]
    assert set(body) == {"images", *real}
    parameters = echoed(body["parameters"])
    assert shape(parameters) == shape(real["parameters"])
    assert parameters == real["parameters"]
    info, real_info = json.loads(body["info"]), real["info"]
    assert list(info) == list(real_info)  # the same keys in the same order
    assert shape({k: info[k] for k in skip & set(info)}) == shape(
        {k: real_info[k] for k in skip & set(real_info)}
    )
    for key in set(info) - skip:
        want = real_info[key]
        want = [normal(v) for v in want] if isinstance(want, list) else normal(want)
        got = [normal(v) for v in info[key]] if isinstance(info[key], list) else normal(info[key])
        assert got == want, key
    made = pngs(body)
    for got, want in zip(made, recorded["images"], strict=True):
        assert (got["format"], got["size"], got["mode"]) == (
            want["format"],
            want["size"],
            want["mode"],
        )
        assert {k: text(v) for k, v in got["text"].items()} == {
            k: text(v) for k, v in want["text"].items()
        }
