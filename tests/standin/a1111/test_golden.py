"""The stand-in held to the real webui: each request recorded from the unmodified A1111 v1.10.1
(tests/data/real-a1111/, see its README) is sent again to the stand-in with the same models
(`--catalog tiny`), and the answers must agree — status, body keys and types, `info` keys in
the server's order, infotext text, PNG format and size, error bodies — and so must the
behaviours over several requests: options that leak, a model switch, an interrupt."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import requests
from golden import REAL, agrees, normal, pngs, send, shape

from sdbatch.backends.a1111.options import IMAGE_OPTIONS
from sdbatch.standin.a1111 import MockWebui
from sdbatch.standin.a1111.catalog import TINY

# Requests that depend on nothing before them: a fresh webui with tinyC loaded answers them.
SINGLE = [
    name
    for name, x in REAL.items()
    if re.match(r"(t\d\d|e\d\d|q[1-6]|r\d|c0[23])_", name)
    and "request" in x
    and x["request"]["path"].startswith("/sdapi/v1/txt2img")
    and x["request"]["method"] == "POST"
    and x["request"]["json"] is not None
    and not name.startswith(("t18", "t19"))  # Clip skip left behind: see the sequence below
]
CLIP = "CLIP_stop_at_last_layers"


@pytest.fixture
def tiny() -> Iterator[MockWebui]:
    with MockWebui(catalog=TINY) as server:
        yield server


@pytest.mark.parametrize("name", SINGLE)
def test_each_recorded_request_gets_the_real_answer(tiny: MockWebui, name: str) -> None:
    agrees(REAL[name], send(tiny, REAL[name]))


def test_the_nan_model_fails_as_the_real_one_did(tiny: MockWebui) -> None:
    # Recorded after the conformance run had loaded tinyNaN once, so its title had a hash.
    nan = {"sd_model_checkpoint": "tinyNaN"}
    first = requests.post(
        f"{tiny.url}/sdapi/v1/txt2img", json={"override_settings": nan}, timeout=5
    )
    assert first.json()["error"] == "NansException"
    agrees(REAL["own/nan_model"], send(tiny, REAL["own/nan_model"]))


@pytest.mark.parametrize("path", ["samplers", "schedulers", "latent-upscale-modes"])
def test_lists_are_the_real_ones(tiny: MockWebui, path: str) -> None:
    got = requests.get(f"{tiny.url}/sdapi/v1/{path}", timeout=5).json()
    assert got == REAL[f"g_{path}"]["body"]


def test_upscalers_have_the_real_names_and_scales(tiny: MockWebui) -> None:
    # Where the weights would come from is the real webui's business, not the stand-in's.
    got = requests.get(f"{tiny.url}/sdapi/v1/upscalers", timeout=5).json()
    real = REAL["g_upscalers"]["body"]
    assert [(u["name"], u["scale"]) for u in got] == [(u["name"], u["scale"]) for u in real]
    assert {tuple(u) for u in got} == {tuple(u) for u in real}


def test_models_and_options_have_the_real_shape(tiny: MockWebui) -> None:
    models = requests.get(f"{tiny.url}/sdapi/v1/sd-models", timeout=5).json()
    assert shape(models[0]) == shape(REAL["g_sd-models"]["body"][0])
    # OBSERVED 11: a model never loaded has no hash yet, and a title without one.
    real_unloaded = REAL["g_sd-models"]["body"][1]
    unloaded = next(m for m in models if m["model_name"] == "tinyD")
    assert (unloaded["hash"], unloaded["title"]) == (None, "tinyD.safetensors")
    assert real_unloaded["hash"] is None and "[" not in real_unloaded["title"]
    options = requests.get(f"{tiny.url}/sdapi/v1/options", timeout=5).json()
    real = REAL["g_options"]["body"]
    for key in IMAGE_OPTIONS:
        assert options[key] == real[key] == IMAGE_OPTIONS[key], key
    assert set(options) <= set(real)


def infotext(response: requests.Response) -> str:
    return normal(pngs(response.json())[0]["text"]["parameters"])


def real_infotext(name: str) -> str:
    return normal(REAL[name]["images"][0]["text"]["parameters"])


def options_of(server: MockWebui, *keys: str) -> dict[str, Any]:
    options = requests.get(f"{server.url}/sdapi/v1/options", timeout=5).json()
    return {k: options[k] for k in keys}


def test_an_override_leaks_into_later_requests(tiny: MockWebui) -> None:
    # L1-L4 (OBSERVED 1): restore_afterwards restores only options the config file holds.
    keys = ("CLIP_stop_at_last_layers", "eta_noise_seed_delta")
    real = {k: REAL["L1_options_before"]["body"][k] for k in keys}
    assert options_of(tiny, *keys) == real
    agrees(
        REAL["L2_override_clipskip2_restore_true"],
        send(tiny, REAL["L2_override_clipskip2_restore_true"]),
    )
    assert options_of(tiny, *keys) == {k: REAL["L3_options_after"]["body"][k] for k in keys}
    agrees(REAL["L4_plain_after"], send(tiny, REAL["L4_plain_after"]))


def test_a_bad_key_still_applies_the_options_before_it(tiny: MockWebui) -> None:
    agrees(
        REAL["t18_override_clip_skip_and_unknown_key"],
        send(tiny, REAL["t18_override_clip_skip_and_unknown_key"]),
    )
    # The next request was made with the Clip skip the failed one set (t19, w01 on).
    agrees(REAL["t19_send_images_false"], send(tiny, REAL["t19_send_images_false"]))
    assert REAL["t19_send_images_false"]["body"]["info"]["clip_skip"] == 2


def replay(
    server: MockWebui,
    names: list[str],
    check_options: Callable[[str, Mapping[str, Any], Mapping[str, Any]], None],
) -> None:
    """Send a recorded sequence in order: each answer's status as recorded, images with the
    recorded infotext, GET /options as `check_options` says, other bodies the same."""
    for name in names:
        recorded = REAL[name]
        response = send(server, recorded)
        assert response.status_code == recorded["status"], name
        if recorded["images"]:
            assert infotext(response) == real_infotext(name), name
        elif recorded["request"]["method"] == "GET":
            check_options(name, response.json(), recorded["body"])
        else:
            assert response.json() == recorded["body"], name


def test_a_model_switch_as_the_real_webui_does_it(tiny: MockWebui) -> None:
    # w01-w10 (OBSERVED 2): restore=true puts the configured model's name back in /options
    # while the switched-to model's hash stays; restore=false keeps the switch; an unknown
    # checkpoint is ignored in a payload and refused by /options. Recorded after t18, with
    # Clip skip 2 left behind, on a webui whose configured model played tinyC's part.
    requests.post(f"{tiny.url}/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}, timeout=5)
    steps = [n for n in REAL if re.match(r"w(0\d|10)_", n)]
    assert len(steps) == 10
    keys = ("sd_model_checkpoint", "sd_checkpoint_hash", "CLIP_stop_at_last_layers")

    def options(name: str, got: Mapping[str, Any], real: Mapping[str, Any]) -> None:
        assert {k: got[k] for k in keys} == {k: normal(real[k]) for k in keys}, name

    replay(tiny, steps, options)


def test_an_interrupt_stops_only_the_running_request() -> None:
    # i01-i06 and OBSERVED 8: the interrupted request answers 200 with what it made and the
    # Steps it was asked for; the one queued behind it runs in full.
    long_run, after = REAL["i01_long_run_interrupted"], REAL["i06_run_after_interrupt"]
    answers: dict[str, requests.Response] = {}

    def post(key: str, recorded: Mapping[str, Any]) -> None:
        answers[key] = send(server, recorded)

    with MockWebui(catalog=TINY, step_delay=0.05) as server:
        first = threading.Thread(target=post, args=("long", long_run))
        first.start()
        while not requests.get(f"{server.url}/sdapi/v1/progress", timeout=5).json()["state"][
            "job_count"
        ]:
            time.sleep(0.01)
        second = threading.Thread(target=post, args=("queued", after))
        second.start()
        time.sleep(0.1)
        assert (
            requests.post(f"{server.url}/sdapi/v1/interrupt", timeout=5).json()
            == REAL["i04_interrupt"]["body"]
        )
        first.join(10)
        second.join(10)
    assert answers["long"].status_code == 200
    assert infotext(answers["long"]) == real_infotext("i01_long_run_interrupted")
    agrees(after, answers["queued"])


def test_drawn_seeds_follow_the_real_pattern(tiny: MockWebui) -> None:
    # t11: seed -1 with n_iter 2 draws one seed; the second image has it + 1.
    recorded = REAL["t11_seed_minus1_niter2"]
    info = json.loads(send(tiny, recorded).json()["info"])
    real = recorded["body"]["info"]
    assert real["all_seeds"][1] == real["all_seeds"][0] + 1
    assert info["all_seeds"][1] == info["all_seeds"][0] + 1 and info["seed"] == info["all_seeds"][0]


def test_a_float_clip_skip_breaks_the_webui_until_options_reset_it(tiny: MockWebui) -> None:
    # own/clip_float_*: GET /options says 2.0; sent back in override_settings, that float
    # fails this request and every later one, until POST /options sets the option again.
    assert requests.get(f"{tiny.url}/sdapi/v1/options", timeout=5).json()[CLIP] == 1
    steps = sorted(n for n in REAL if n.startswith("own/clip_float_"))
    assert len(steps) == 10

    def clip(name: str, got: Mapping[str, Any], real: Mapping[str, Any]) -> None:
        assert (got[CLIP], type(got[CLIP])) == (real[CLIP], float), name

    replay(tiny, steps, clip)


def test_the_server_kind_probe_gets_the_real_404(tiny: MockWebui) -> None:
    # sdbatch's probe of a job without server.type: the real webui has no /system_stats.
    real = REAL["own/system_stats_probe"]
    assert real["status"] == 404
    agrees(real, send(tiny, real))
