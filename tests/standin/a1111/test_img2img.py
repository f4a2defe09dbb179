"""img2img held to the real webui: every `own/img2img_*` request recorded from the unmodified
A1111 v1.10.1 (tests/data/real-a1111/trim.py `--record URL --only img2img`) is sent again to the
stand-in with the same models, and the answers must agree as txt2img's do (golden.py) — status,
body keys and types, `info` keys in order and values, infotext and PNG size, error bodies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from golden import REAL, agrees, send

from sdbatch.standin.a1111 import MockWebui
from sdbatch.standin.a1111.catalog import TINY

IMG2IMG = sorted(name for name in REAL if name.startswith("own/img2img_"))
URL = "/sdapi/v1/img2img"


@pytest.fixture
def tiny() -> Iterator[MockWebui]:
    with MockWebui(catalog=TINY) as server:
        yield server


def payload(name: str, **changes: Any) -> dict[str, Any]:
    return {**REAL[f"own/img2img_{name}"]["request"]["json"], **changes}


def test_the_recordings_cover_what_img2img_adds() -> None:
    statuses = {REAL[name]["status"] for name in IMG2IMG}
    assert len(IMG2IMG) >= 20 and statuses == {200, 404, 422, 500}


@pytest.mark.parametrize("name", IMG2IMG)
def test_each_recorded_img2img_gets_the_real_answer(tiny: MockWebui, name: str) -> None:
    agrees(REAL[name], send(tiny, REAL[name]))


def test_without_a_size_the_picture_is_resized_to_512(tiny: MockWebui) -> None:
    # own/img2img_no_size_65x64: the request's defaults, whatever the picture's size.
    recorded = REAL["own/img2img_no_size_65x64"]
    assert "width" not in recorded["request"]["json"]
    assert recorded["images"][0]["size"] == [512, 512]
    agrees(recorded, send(tiny, recorded))


def test_a_bad_mask_fails_before_the_queue_and_a_bad_picture_inside_it(tiny: MockWebui) -> None:
    # decode order of Api.img2imgapi: the mask at once, the init images under the queue lock.
    answers: dict[str, requests.Response] = {}

    def post(key: str, body: dict[str, Any]) -> None:
        answers[key] = requests.post(tiny.url + URL, json=body, timeout=30)

    tiny.queue_lock.acquire()  # a job is running
    try:
        post("mask", payload("bad_mask"))
        waiting = threading.Thread(target=post, args=("picture", payload("not_an_image")))
        waiting.start()
        time.sleep(0.3)
        assert "picture" not in answers
    finally:
        tiny.queue_lock.release()
    waiting.join(10)
    real = REAL["own/img2img_bad_mask"]["body"]
    assert answers["mask"].json() == answers["picture"].json() == real


def test_a_bad_picture_leaves_the_options_alone(tiny: MockWebui) -> None:
    # Seen on the real webui: decoding comes before the overrides, so none of them leaks.
    body = payload(
        "garbage_b64",
        override_settings={"eta_noise_seed_delta": 31337},
        override_settings_restore_afterwards=False,
    )
    assert requests.post(tiny.url + URL, json=body, timeout=30).status_code == 500
    options = requests.get(f"{tiny.url}/sdapi/v1/options", timeout=5).json()
    assert options["eta_noise_seed_delta"] == 0


@pytest.mark.parametrize(("strength", "sampled"), [(0.5, 6), (0.3, 4)])
def test_progress_counts_the_denoised_steps(strength: float, sampled: int) -> None:
    # Seen on the real webui (steps 10): /progress says job "scripts_img2img" and
    # sampling_steps = int(strength * steps) + 1, which is what the sampler runs.
    seen: set[tuple[str, int]] = set()
    with MockWebui(catalog=TINY, step_delay=0.02) as server:
        body = payload("plain_b64", steps=10, denoising_strength=strength)
        run = threading.Thread(
            target=requests.post, args=(server.url + URL,), kwargs={"json": body, "timeout": 30}
        )
        run.start()
        while run.is_alive():
            state = requests.get(f"{server.url}/sdapi/v1/progress", timeout=5).json()["state"]
            seen.add((state["job"], state["sampling_steps"]))
            time.sleep(0.01)
    assert ("scripts_img2img", sampled) in seen


def test_txt2img_ignores_img2img_fields(tiny: MockWebui) -> None:
    # The txt2img model has no init_images: sent there they are dropped, as unknown keys are.
    body = {key: v for key, v in payload("plain_b64").items() if key != "denoising_strength"}
    answer = requests.post(f"{tiny.url}/sdapi/v1/txt2img", json=body, timeout=30).json()
    assert "init_images" not in answer["parameters"]
    assert "Denoising strength" not in json.loads(answer["info"])["infotexts"][0]
