"""The stand-in webui over real loopback HTTP. Expected values come from the A1111 v1.10.1
contract (shared/a1111-api.md, txt2img-request.schema.json, txt2img-response.example.json)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from sdbatch.standin.a1111 import FifoLock, MockWebui, cli
from sdbatch.standin.a1111.images import encode, render

TXT2IMG = "/sdapi/v1/txt2img"
SMALL = {"width": 64, "height": 48, "steps": 3}

# Processed.js() key order (a1111-api.md §2).
INFO_KEYS = [
    "prompt",
    "all_prompts",
    "negative_prompt",
    "all_negative_prompts",
    "seed",
    "all_seeds",
    "subseed",
    "all_subseeds",
    "subseed_strength",
    "width",
    "height",
    "sampler_name",
    "cfg_scale",
    "steps",
    "batch_size",
    "restore_faces",
    "face_restoration_model",
    "sd_model_name",
    "sd_model_hash",
    "sd_vae_name",
    "sd_vae_hash",
    "seed_resize_from_w",
    "seed_resize_from_h",
    "denoising_strength",
    "extra_generation_params",
    "index_of_first_image",
    "infotexts",
    "styles",
    "job_timestamp",
    "clip_skip",
    "is_using_inpainting_conditioning",
    "version",
]
# The request model's 55 fields in model order, as echoed in `parameters` (§1 and the example).
PARAMETER_KEYS = [
    "prompt",
    "negative_prompt",
    "styles",
    "seed",
    "subseed",
    "subseed_strength",
    "seed_resize_from_h",
    "seed_resize_from_w",
    "sampler_name",
    "scheduler",
    "batch_size",
    "n_iter",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "restore_faces",
    "tiling",
    "do_not_save_samples",
    "do_not_save_grid",
    "eta",
    "denoising_strength",
    "s_min_uncond",
    "s_churn",
    "s_tmax",
    "s_tmin",
    "s_noise",
    "override_settings",
    "override_settings_restore_afterwards",
    "refiner_checkpoint",
    "refiner_switch_at",
    "disable_extra_networks",
    "firstpass_image",
    "comments",
    "enable_hr",
    "firstphase_width",
    "firstphase_height",
    "hr_scale",
    "hr_upscaler",
    "hr_second_pass_steps",
    "hr_resize_x",
    "hr_resize_y",
    "hr_checkpoint_name",
    "hr_sampler_name",
    "hr_scheduler",
    "hr_prompt",
    "hr_negative_prompt",
    "force_task_id",
    "sampler_index",
    "script_name",
    "script_args",
    "send_images",
    "save_images",
    "alwayson_scripts",
    "infotext",
]


@pytest.fixture
def srv() -> Iterator[MockWebui]:
    with MockWebui(seed=1234) as server:
        yield server


def post(server: MockWebui, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + TXT2IMG, json=body, timeout=10, **kwargs)


def generate(server: MockWebui, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST txt2img, expect 200; return (response, decoded info)."""
    response = post(server, {**SMALL, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data["info"], str)
    return data, json.loads(data["info"])


def expect(response: requests.Response, status: int, body: Any) -> None:
    """The answer's status, then its exact JSON body."""
    assert response.status_code == status, response.text
    assert response.json() == body


def webui_error(error: str, *, detail: str = "", errors: str = "") -> dict[str, str]:
    """The body A1111's api_middleware sends for an exception (a1111-api.md §3); `body` is
    always empty there, so only the parts that vary are written at each use."""
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def v1_item(field: str, msg: str, type_: str) -> dict[str, Any]:
    """One pydantic-v1 422 item about a top-level request field."""
    return {"loc": ["body", field], "msg": msg, "type": type_}


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def in_thread(fn: Callable[[], requests.Response]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    return thread, result


# -- the request model ---------------------------------------------------------------------


def test_lax_coercion_and_unknown_fields_ignored(srv: MockWebui) -> None:
    data, info = generate(
        srv,
        steps="3",
        cfg_scale=7,
        batch_size=1.9,
        seed="12",
        restore_faces="no",
        send_images="yes",
        foo="bar",
    )
    params = data["parameters"]
    assert params["steps"] == 3 and params["batch_size"] == 1 and params["seed"] == 12
    assert params["cfg_scale"] == 7.0 and isinstance(params["cfg_scale"], float)
    assert params["restore_faces"] is False and params["send_images"] is True
    assert "foo" not in params
    assert info["all_seeds"] == [12] and info["steps"] == 3 and len(data["images"]) == 1


def test_parameters_echo_every_field_with_defaults(srv: MockWebui) -> None:
    data, info = generate(srv)
    params = data["parameters"]
    assert list(params) == PARAMETER_KEYS
    assert params["seed"] == -1 and params["sampler_name"] is None
    assert params["sampler_index"] == "Euler" and params["denoising_strength"] is None
    assert params["script_args"] == [] and params["alwayson_scripts"] == {}
    assert info["sampler_name"] == "Euler"  # sampler_name null -> sampler_index


def test_type_errors_are_collected_in_model_order(srv: MockWebui) -> None:
    response = post(
        srv,
        {
            "width": "wide",
            "steps": "many",
            "send_images": None,
            "seed": None,
            "sampler_index": None,
        },
    )
    detail = [
        v1_item("steps", "value is not a valid integer", "type_error.integer"),
        v1_item("width", "value is not a valid integer", "type_error.integer"),
        v1_item("sampler_index", "none is not an allowed value", "type_error.none.not_allowed"),
        v1_item("send_images", "none is not an allowed value", "type_error.none.not_allowed"),
    ]
    expect(response, 422, {"detail": detail})
    assert srv.txt2img_count == 0


def test_empty_body_and_broken_json_are_422(srv: MockWebui) -> None:
    empty = requests.post(srv.url + TXT2IMG, timeout=10)
    missing = {"loc": ["body"], "msg": "field required", "type": "value_error.missing"}
    expect(empty, 422, {"detail": [missing]})
    broken = requests.post(
        srv.url + TXT2IMG, data=b"{", timeout=10, headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    [error] = broken.json()["detail"]
    assert error["type"] == "value_error.jsondecode" and error["loc"][0] == "body"


def test_unknown_script_is_a_422_httpexception(srv: MockWebui) -> None:
    response = post(srv, {**SMALL, "script_name": "no such script"})
    expect(response, 422, webui_error("HTTPException", detail="Script 'no such script' not found"))


# -- seeds, info, images -------------------------------------------------------------------


def test_random_seed_and_consecutive_seeds(srv: MockWebui) -> None:
    _, info = generate(srv, seed=-1, batch_size=3)
    seed = info["seed"]
    assert 0 <= seed < 4294967294 and info["all_seeds"] == [seed, seed + 1, seed + 2]
    _, info = generate(srv, seed=100, batch_size=2, n_iter=2)
    assert info["all_seeds"] == [100, 101, 102, 103]
    _, info = generate(srv, seed=100, subseed=7, subseed_strength=0.5, batch_size=2)
    assert info["all_seeds"] == [100, 100] and info["all_subseeds"] == [7, 8]


def test_random_seeds_follow_the_server_seed() -> None:
    seeds = []
    for _ in range(2):
        with MockWebui(seed=99) as server:
            seeds.append([generate(server, seed=-1)[1]["seed"] for _ in range(3)])
    assert seeds[0] == seeds[1] and len(set(seeds[0])) == 3


def test_info_is_a_json_string_in_webui_order(srv: MockWebui) -> None:
    data, info = generate(srv, prompt="café", seed=5)
    assert list(info) == INFO_KEYS
    assert '"prompt": "caf\\u00e9"' in data["info"]  # default separators, ASCII escapes
    assert info["version"] == "v1.10.1" and info["sd_model_hash"] == "6ce0161689"
    assert info["sd_model_name"] == "v1-5-pruned-emaonly" and info["index_of_first_image"] == 0


def test_infotext_and_png_parameters_chunk(srv: MockWebui) -> None:
    data, info = generate(
        srv,
        prompt="a cat",
        negative_prompt="blurry, lowres",
        seed=5,
        sampler_name="DPM++ 2M",
        scheduler="Karras",
        cfg_scale=7,
        batch_size=2,
    )
    assert info["infotexts"][0] == (
        "a cat\nNegative prompt: blurry, lowres\nSteps: 3, Sampler: DPM++ 2M, Schedule type: "
        "Karras, CFG scale: 7.0, Seed: 5, Size: 64x48, Model hash: 6ce0161689, "
        "Model: v1-5-pruned-emaonly, Version: v1.10.1"
    )
    assert "Seed: 6," in info["infotexts"][1]
    assert len(data["images"]) == 2
    for b64, text in zip(data["images"], info["infotexts"], strict=True):
        image = png(b64)
        assert image.format == "PNG" and image.size == (64, 48)
        assert image.info["parameters"] == text
    assert data["images"][0] != data["images"][1]


@pytest.mark.parametrize(
    ("save_images", "batch_size", "expected_images", "first"),
    [
        (True, 2, 3, 1),
        (True, 1, 1, 0),
        (False, 2, 2, 0),
    ],
)
def test_grid_only_with_save_images_and_two_images(
    srv: MockWebui,
    save_images: bool,
    batch_size: int,
    expected_images: int,
    first: int,
) -> None:
    data, info = generate(srv, seed=1, batch_size=batch_size, save_images=save_images)
    assert len(data["images"]) == expected_images == len(info["infotexts"])
    assert info["index_of_first_image"] == first
    assert len(info["all_seeds"]) == batch_size
    for b64 in data["images"][first:]:
        assert png(b64).size == (64, 48)
    if first:
        assert png(data["images"][0]).size != (64, 48)


def test_send_images_false(srv: MockWebui) -> None:
    data, info = generate(srv, send_images=False, batch_size=2)
    assert data["images"] == [] and len(info["all_seeds"]) == 2


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected_sampler", "schedule"),
    [
        ("k_euler", None, "DPM++ 2M", "Karras"),  # aliases aren't accepted: first sampler
        ("euler a", None, "DPM++ 2M", "Karras"),  # names are case-sensitive
        ("DPM++ 2M Karras", None, "DPM++ 2M", "Karras"),  # legacy combined name is split
        ("Euler a Exponential", None, "Euler a", "Exponential"),
        ("Euler", "karras", "Euler", "Karras"),  # a scheduler name or label works
        ("Euler", "bogus", "Euler", None),  # unknown scheduler -> Automatic -> model default
        ("DPM++ 2M", "bogus", "DPM++ 2M", "Karras"),  # Automatic -> the sampler's Karras
        (None, None, "Euler", None),  # sampler_index default
    ],
)
def test_sampler_and_scheduler_resolution(
    srv: MockWebui,
    sampler: str | None,
    scheduler: str | None,
    expected_sampler: str,
    schedule: str | None,
) -> None:
    _, info = generate(srv, sampler_name=sampler, scheduler=scheduler)
    assert info["sampler_name"] == expected_sampler
    assert f"Sampler: {expected_sampler}," in info["infotexts"][0]
    if schedule is None:
        # Nothing recorded by the sampler, yet the infotext says Automatic (real t10, e03).
        assert info["extra_generation_params"] == {}
        assert "Schedule type: Automatic," in info["infotexts"][0]
    else:
        assert info["extra_generation_params"] == {"Schedule type": schedule}
        assert f"Schedule type: {schedule}," in info["infotexts"][0]


def test_checkpoint_override_by_alias(srv: MockWebui) -> None:
    models = requests.get(srv.url + "/sdapi/v1/sd-models", timeout=10).json()
    assert len(models) >= 2
    other = models[1]
    assert other["title"] == f"{other['model_name']}.safetensors [{other['hash']}]"
    for alias in (other["title"], other["model_name"], other["hash"]):
        _, info = generate(srv, override_settings={"sd_model_checkpoint": alias})
        assert info["sd_model_name"] == other["model_name"]
        assert info["sd_model_hash"] == other["hash"]
    _, info = generate(srv, override_settings={"sd_model_checkpoint": "nope.safetensors"})
    assert info["sd_model_name"] == models[0]["model_name"]  # silently the loaded model
    bad = post(srv, {**SMALL, "override_settings": {"CLIP_stop_at_last_layer": 2}})
    expect(bad, 500, webui_error("KeyError", errors="'CLIP_stop_at_last_layer'"))


def test_hires_fix_returns_the_upscaled_size(srv: MockWebui) -> None:
    data, info = generate(srv, width=32, height=32, enable_hr=True, denoising_strength=0.5)
    assert png(data["images"][0]).size == (64, 64)  # hr_scale defaults to 2.0
    assert info["width"] == 32


def test_options_and_samples_format(srv: MockWebui) -> None:
    options = requests.get(srv.url + "/sdapi/v1/options", timeout=10).json()
    assert options["samples_format"] == "png" and options["jpeg_quality"] == 80.0
    assert options["return_grid"] is True and options["enable_pnginfo"] is True
    assert options["sd_model_checkpoint"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    response = requests.post(
        srv.url + "/sdapi/v1/options", json={"samples_format": "jpg"}, timeout=10
    )
    assert response.status_code == 200 and response.json() is None
    data, _ = generate(srv)
    assert png(data["images"][0]).format == "JPEG"
    unknown = requests.post(srv.url + "/sdapi/v1/options", json={"nope": 1}, timeout=10)
    assert unknown.status_code == 500 and unknown.json()["error"] == "KeyError"


def test_list_endpoints_and_unknown_routes(srv: MockWebui) -> None:
    samplers = requests.get(srv.url + "/sdapi/v1/samplers", timeout=10).json()
    assert samplers[0] == {
        "name": "DPM++ 2M",
        "aliases": ["k_dpmpp_2m"],
        "options": {"scheduler": "karras"},
    }
    assert {"name": "Euler", "aliases": ["k_euler"], "options": {}} in samplers
    assert len(samplers) == 20
    schedulers = requests.get(srv.url + "/sdapi/v1/schedulers", timeout=10).json()
    assert schedulers[0] == {
        "name": "automatic",
        "label": "Automatic",
        "aliases": None,
        "default_rho": -1.0,
        "need_inner_model": False,
    }
    assert {
        "name": "sgm_uniform",
        "label": "SGM Uniform",
        "aliases": ["SGMUniform"],
        "default_rho": -1.0,
        "need_inner_model": True,
    } in schedulers
    for path in ("/sdapi/v1/upscalers", "/sdapi/v1/latent-upscale-modes", "/sdapi/v1/memory"):
        assert requests.get(srv.url + path, timeout=10).status_code == 200
    missing = requests.get(srv.url + "/sdapi/v1/nope", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong = requests.get(srv.url + TXT2IMG, timeout=10)
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}


def test_auth() -> None:
    with MockWebui(auth=("alice", "s3cret")) as server:
        missing = post(server, SMALL)
        expect(missing, 401, webui_error("HTTPException", detail="Not authenticated"))
        assert "www-authenticate" not in missing.headers
        wrong = requests.get(server.url + "/sdapi/v1/progress", auth=("alice", "x"), timeout=10)
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "Incorrect username or password"
        assert post(server, SMALL, auth=("alice", "s3cret")).status_code == 200
        assert requests.get(server.url + "/mock/log", timeout=10).status_code == 200


# -- queue, progress, interrupt ------------------------------------------------------------


def test_requests_run_one_at_a_time_in_arrival_order() -> None:
    with MockWebui(image_delay=0.03) as server:
        threads = []
        for i in range(6):
            send = functools.partial(post, server, {**SMALL, "prompt": f"p{i}"})
            threads.append(in_thread(send)[0])
            # Send the next one only once this one is queued, so arrival order is known.
            n = i + 1
            wait_for(lambda: server.queue_depth == n or server.txt2img_count >= n)  # noqa: B023 - used at once
        for thread in threads:
            thread.join(10)
        assert [g.prompt for g in server.generated] == [f"p{i}" for i in range(6)]
        assert server.busy_seconds >= 6 * 0.03


def test_progress_answers_during_generation_and_interrupt_cuts_it_short() -> None:
    with MockWebui(step_delay=0.1) as server:
        started = time.monotonic()
        thread, result = in_thread(lambda: post(server, {**SMALL, "steps": 50, "n_iter": 3}))
        wait_for(lambda: server.txt2img_count == 1)
        wait_for(
            lambda: (
                requests.get(server.url + "/sdapi/v1/progress", timeout=10).json()["state"][
                    "sampling_step"
                ]
                >= 1
            )
        )
        progress = requests.get(
            server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=10
        ).json()
        assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] == 3
        assert progress["state"]["sampling_steps"] == 50
        assert requests.post(server.url + "/sdapi/v1/interrupt", timeout=10).json() == {}
        thread.join(10)
        assert time.monotonic() - started < 3  # 3 x 50 steps x 0.1 s uninterrupted
        response = result[0]
        assert response.status_code == 200
        assert len(response.json()["images"]) == 1  # the running batch, then stop
        idle = requests.get(server.url + "/sdapi/v1/progress", timeout=10).json()
        assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_skip_ends_only_the_current_batch() -> None:
    with MockWebui(step_delay=0.05) as server:
        started = time.monotonic()
        thread, result = in_thread(lambda: post(server, {**SMALL, "steps": 20, "n_iter": 2}))
        wait_for(lambda: server.state.progress()["state"]["sampling_step"] >= 1)
        assert requests.post(server.url + "/sdapi/v1/skip", timeout=10).json() is None
        thread.join(10)
        assert time.monotonic() - started < 1.9  # 2 x 20 steps x 0.05 s without the skip
        assert len(result[0].json()["images"]) == 2  # the next batch still ran


def test_fifo_lock_grants_in_call_order() -> None:
    lock, order = FifoLock(), []
    lock.acquire()
    threads = []
    for i in range(8):

        def take(i: int = i) -> None:
            with lock:
                order.append(i)

        threads.append(threading.Thread(target=take))
        threads[-1].start()
        wait_for(lambda: lock.waiting == len(threads) + 1)
    lock.release()
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))


# -- faults --------------------------------------------------------------------------------


def test_injected_500_has_the_webui_shape(srv: MockWebui) -> None:
    srv.inject(
        fail_next=1,
        fail_error="OutOfMemoryError",
        fail_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    failed = post(srv, SMALL)
    oom = webui_error("OutOfMemoryError", errors="CUDA out of memory. Tried to allocate 2.00 GiB")
    expect(failed, 500, oom)
    srv.inject(fail_next=1, fail_status=503)
    assert post(srv, SMALL).status_code == 503
    assert post(srv, SMALL).status_code == 200
    assert srv.txt2img_count == 1
    assert [r.status for r in srv.requests] == [500, 503, 200]


def test_reset_sends_nothing_and_generates_nothing() -> None:
    with MockWebui(seed=5) as server:
        server.inject(reset_next=1)
        with pytest.raises(requests.ConnectionError):
            post(server, SMALL)
        assert server.generated == [] and server.txt2img_count == 0
        assert server.requests[0].status is None and server.requests[0].fault == "reset"
        _, info = generate(server)
    with MockWebui(seed=5) as fresh:
        assert generate(fresh)[1]["seed"] == info["seed"]  # the reset consumed no seed


def test_hang_times_out_other_requests_pass_and_stop_is_prompt() -> None:
    server = MockWebui().start()
    try:
        server.inject(hang_next=1, hang_seconds=30.0)
        with pytest.raises(requests.ReadTimeout):
            requests.post(server.url + TXT2IMG, json=SMALL, timeout=0.3)
        assert post(server, SMALL).status_code == 200
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
    assert len(server.generated) == 1  # the hung request was dropped, not generated


def test_fault_rates_are_reproducible_with_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        with MockWebui(seed=3) as server:
            server.inject(fail_rate=0.3, reset_rate=0.1)
            for _ in range(30):
                with contextlib.suppress(requests.ConnectionError):
                    post(server, SMALL)
            outcomes.append([(r.status, r.fault) for r in server.requests])
    assert outcomes[0] == outcomes[1]
    kinds = {fault for _, fault in outcomes[0]}
    assert kinds == {None, "fail", "reset"}


def test_out_of_memory_above_a_batch_size(srv: MockWebui) -> None:
    set_faults = requests.post(srv.url + "/mock/faults", json={"oom_above_batch": 2}, timeout=10)
    assert set_faults.json()["oom_above_batch"] == 2
    failed = post(srv, {**SMALL, "batch_size": 3})
    message = (
        "CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of "
        "7.79 GiB of which 1.21 GiB is free. (sdbatch stand-in)"
    )
    expect(failed, 500, webui_error("OutOfMemoryError", errors=message))
    assert post(srv, {**SMALL, "batch_size": 2}).status_code == 200
    assert srv.txt2img_count == 1 and len(srv.generated) == 2  # the failed job made nothing
    assert [(r.status, r.fault) for r in srv.requests[1:]] == [(500, "oom"), (200, None)]
    assert srv.queue_depth == 0  # the failed job let go of the queue lock


def test_out_of_memory_for_given_seeds(srv: MockWebui) -> None:
    assert srv.inject(oom_seeds=[7]).as_json()["oom_seeds"] == [7]
    assert post(srv, {**SMALL, "seed": 6, "batch_size": 2}).status_code == 500  # makes 6 and 7
    assert post(srv, {**SMALL, "seed": 8, "batch_size": 2}).status_code == 200
    assert post(srv, {**SMALL, "seed": 7, "subseed_strength": 0.5}).status_code == 500


def test_a_slow_job_holds_the_queue_and_shows_busy() -> None:
    with MockWebui() as server:
        server.inject(slow_next=1, slow_seconds=0.5)
        slow, result = in_thread(lambda: post(server, SMALL))
        wait_for(lambda: server.state.job_count == 1)
        assert (
            requests.get(server.url + "/sdapi/v1/progress", timeout=10).json()["state"]["job_count"]
            == 1
        )
        fast, second = in_thread(lambda: post(server, SMALL))
        slow.join(5)
        fast.join(5)
        assert result[0].status_code == second[0].status_code == 200
        # Logged as each answer goes out, which needn't be in arrival order.
        first, then = sorted(
            (r for r in server.requests if r.path == TXT2IMG), key=lambda r: r.time
        )
        done = [g.time for g in server.generated]
        assert done[0] - first.time >= 0.5  # the slow one took its extra half second
        assert first.time < then.time < done[0] < done[1]  # the next one queued behind it


def test_control_routes(srv: MockWebui) -> None:
    set_faults = requests.post(srv.url + "/mock/faults", json={"fail_next": 1}, timeout=10)
    assert set_faults.status_code == 200 and set_faults.json()["fail_next"] == 1
    assert post(srv, SMALL).status_code == 500
    log = requests.get(srv.url + "/mock/log", timeout=10).json()
    assert [r["status"] for r in log["requests"]][-1] == 500
    assert requests.post(srv.url + "/mock/reset", timeout=10).json() == {}
    assert [r.path for r in srv.requests] == ["/mock/reset"]  # logged after the clearing
    assert requests.post(srv.url + "/mock/faults", json={"bogus": 1}, timeout=10).status_code == 400


# -- clients and the command line ----------------------------------------------------------


def test_webuiapi_client_gets_the_images(srv: MockWebui) -> None:
    webuiapi = pytest.importorskip("webuiapi")
    api = webuiapi.WebUIApi(host="127.0.0.1", port=srv.port)
    result = api.txt2img(prompt="cat", seed=5, steps=3, width=64, height=80, batch_size=2)
    assert result.image.size == (64, 80) and len(result.images) == 2
    assert result.info["all_seeds"] == [5, 6]


def test_cli_serves_until_stopped() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--port", "0", "--seed", "1", "--auth", "u:p"])
    out, stop = io.StringIO(), threading.Event()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(cli.run(args, out=out, stop=stop)))
    thread.start()
    try:
        wait_for(lambda: "listening on" in out.getvalue())
        url = out.getvalue().split("listening on ")[1].strip()
        assert url.startswith("http://127.0.0.1:")
        response = requests.get(url + "/sdapi/v1/progress", auth=("u", "p"), timeout=10)
        assert response.status_code == 200
    finally:
        stop.set()
        thread.join(5)
    assert codes == [0]


def test_a_512_png_costs_a_few_milliseconds() -> None:
    label = ["a watercolor fox in a forest", "seed 123", "steps 20  cfg 7.0", "DPM++ 2M"]
    started = time.perf_counter()
    for seed in range(20):
        encode(render(512, 512, seed, label, "a fox"), "png", "parameters text")
    per_image = (time.perf_counter() - started) / 20
    assert per_image < 0.05  # a loose bound; ~3 ms measured on the dev machine
