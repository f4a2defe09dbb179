"""The stand-in's `behaviour`s (A1111 v1.10/v1.9/v1.8, Forge, SD.Next), silent substitution and
model-load counting, over real loopback HTTP. Expected values come from the contract
(shared/a1111-api.md §3 table, §5 history, §7 override_settings, §8 Forge and SD.Next)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from sdbatch.standin.a1111 import MockWebui, cli

TXT2IMG = "/sdapi/v1/txt2img"
SMALL = {"width": 64, "height": 48, "steps": 3}
SD15 = "v1-5-pruned-emaonly.safetensors [6ce0161689]"


def webui_error(error: str, *, detail: str = "", errors: str = "") -> dict[str, str]:
    """The body A1111's api_middleware sends for an exception (a1111-api.md §3); `body` is
    always empty there, so only the parts that vary are written at each use."""
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def sdnext_error(error: str, code: int, *, detail: str = "", errors: str) -> dict[str, Any]:
    """SD.Next's variant (§8): the same keys plus the status `code`."""
    return {"error": error, "code": code, "detail": detail, "body": "", "errors": errors}


NOT_FOUND_A1111 = webui_error("HTTPException", detail="Sampler not found")
NOT_FOUND_SDNEXT = sdnext_error(
    "HTTPException", 404, detail="Sampler not found", errors="404: Sampler not found"
)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, MockWebui]]:
    """One server per behaviour, shared by the read-only tests of this module."""
    started = {
        name: MockWebui(seed=7, behaviour=name).start()
        for name in ("v1.10", "v1.9", "v1.8", "forge", "sdnext")
    }
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def post(server: MockWebui, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + TXT2IMG, json=body, timeout=10, **kwargs)


def get(server: MockWebui, path: str) -> requests.Response:
    return requests.get(server.url + path, timeout=10)


def generate(server: MockWebui, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    response = post(server, {**SMALL, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return data, json.loads(data["info"])


def expect(response: requests.Response, status: int, body: Any) -> None:
    """The answer's status, then its exact JSON body."""
    assert response.status_code == status, response.text
    assert response.json() == body


def ask(sampler_name: str, **extra: str) -> dict[str, str]:
    """A txt2img body naming a sampler (and maybe a schedule): keeps each row of the sampler
    table below on one line."""
    return {"sampler_name": sampler_name, **extra}


def png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


# -- sampler and scheduler table (§3, §5, §8) ------------------------------------------------

OK = 200


@pytest.mark.parametrize(
    ("behaviour", "body", "sampler", "schedule"),
    [
        # v1.10: silent fallback, combined names split, unknown scheduler -> Automatic.
        ("v1.10", ask("nope"), "DPM++ 2M", "Schedule type: Karras"),
        ("v1.10", ask("DPM++ 2M Karras"), "DPM++ 2M", "Schedule type: Karras"),
        ("v1.10", ask("Euler", scheduler="bogus"), "Euler", "Schedule type: Automatic"),
        # v1.9: scheduler supported; unknown scheduler -> Automatic.
        ("v1.9", ask("Euler", scheduler="Karras"), "Euler", "Schedule type: Karras"),
        ("v1.9", ask("Euler", scheduler="bogus"), "Euler", "Schedule type: Automatic"),
        # v1.8: the combined name is the sampler; no "Schedule type"; `scheduler` ignored.
        ("v1.8", ask("DPM++ 2M Karras"), "DPM++ 2M Karras", None),
        ("v1.8", ask("Euler", scheduler="Karras"), "Euler", None),
        ("v1.8", {}, "Euler", None),  # sampler_index default
        # Forge: like v1.10, with its own samplers and schedulers.
        ("forge", ask("nope"), "DPM++ 2M", "Schedule type: Karras"),
        ("forge", ask("DEIS"), "DEIS", "Schedule type: Automatic"),
        ("forge", ask("Euler", scheduler="Turbo"), "Euler", "Schedule type: Turbo"),
        # SD.Next: case-insensitive names, `scheduler` ignored, schedulers_sigma picks Karras.
        ("sdnext", ask("euler A"), "Euler a", None),
        ("sdnext", ask("Euler a", scheduler="Karras"), "Euler a", None),
        ("sdnext", ask("Euler", schedulers_sigma="karras"), "Euler", "Sampler sigma: karras"),
        ("sdnext", ask("Euler", schedulers_sigma="default"), "Euler", None),
        ("sdnext", {}, "Default", None),
    ],
)
def test_sampler_resolution(
    servers: dict[str, MockWebui],
    behaviour: str,
    body: dict[str, Any],
    sampler: str,
    schedule: str | None,
) -> None:
    _, info = generate(servers[behaviour], **body)
    text = info["infotexts"][0]
    assert info["sampler_name"] == sampler
    assert f"Sampler: {sampler}," in text
    if schedule is None:
        assert "Schedule type" not in text and "Sampler sigma" not in text
    else:
        assert schedule in text


@pytest.mark.parametrize(
    ("behaviour", "name", "expected"),
    [
        ("v1.9", "nope", NOT_FOUND_A1111),
        ("v1.9", "DPM++ 2M Karras", NOT_FOUND_A1111),  # combined names removed in 1.9.0
        ("v1.8", "nope", NOT_FOUND_A1111),
        ("v1.8", "DPM++ 2M Exponential", NOT_FOUND_A1111),  # not a v1.8 sampler
        ("sdnext", "nope", NOT_FOUND_SDNEXT),
        ("sdnext", "DPM++ 2M Karras", NOT_FOUND_SDNEXT),
    ],
)
def test_unknown_sampler_is_a_404(
    servers: dict[str, MockWebui], behaviour: str, name: str, expected: dict[str, Any]
) -> None:
    server = servers[behaviour]
    before = server.txt2img_count
    expect(post(server, {**SMALL, "sampler_name": name}), 404, expected)
    assert server.txt2img_count == before  # nothing generated, no model loaded
    assert server.model_loads == 0


def test_v18_has_no_scheduler_field_or_route(servers: dict[str, MockWebui]) -> None:
    server = servers["v1.8"]
    data, info = generate(server, sampler_name="DPM++ 2M Karras", scheduler="Exponential")
    assert "scheduler" not in data["parameters"] and "hr_scheduler" not in data["parameters"]
    assert info["extra_generation_params"] == {}
    assert server.generated[-1].schedule_type == "Karras"  # what the image really got
    missing = get(server, "/sdapi/v1/schedulers")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    names = [s["name"] for s in get(server, "/sdapi/v1/samplers").json()]
    for name in ("DPM++ 2M Karras", "DPM++ 2M", "Euler a", "Euler", "DPM++ SDE Karras"):
        assert name in names
    assert "LMS Karras" in names and "DPM++ 2M SDE Exponential" in names


def test_sampler_and_scheduler_lists(servers: dict[str, MockWebui]) -> None:
    v19 = [s["name"] for s in get(servers["v1.9"], "/sdapi/v1/samplers").json()]
    assert "DPM++ 2M" in v19 and "DPM++ 2M Karras" not in v19
    labels = [s["label"] for s in get(servers["v1.9"], "/sdapi/v1/schedulers").json()]
    assert labels[:3] == ["Automatic", "Uniform", "Karras"]
    forge = [s["name"] for s in get(servers["forge"], "/sdapi/v1/samplers").json()]
    assert {"HeunPP2", "IPNDM", "IPNDM_V", "DEIS", "DDPM", "DPM++ 2M"} <= set(forge)
    forge_labels = {s["label"] for s in get(servers["forge"], "/sdapi/v1/schedulers").json()}
    assert {"Turbo", "Align Your Steps GITS", "Align Your Steps 11", "Align Your Steps 32"} <= (
        forge_labels
    )
    sdnext = get(servers["sdnext"], "/sdapi/v1/samplers").json()
    assert all(set(s) == {"name", "options"} for s in sdnext)
    assert "Euler a" in [s["name"] for s in sdnext]
    schedulers = get(servers["sdnext"], "/sdapi/v1/schedulers").json()
    assert all(set(s) == {"name", "cls", "options"} for s in schedulers)
    assert {"name": "Euler a", "cls": "EulerAncestralDiscreteScheduler"}.items() <= (
        next(s for s in schedulers if s["name"] == "Euler a").items()
    )


def test_shared_endpoints_work_everywhere(servers: dict[str, MockWebui]) -> None:
    for server in servers.values():
        for path in ("/sd-models", "/upscalers", "/latent-upscale-modes", "/options"):
            response = get(server, "/sdapi/v1" + path)
            assert response.status_code == 200, (server.behaviour.name, path)
        models = get(server, "/sdapi/v1/sd-models").json()
        assert models[0]["title"] == SD15


# -- info keys and version ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "version"),
    [
        ("v1.10", "v1.10.1"),
        ("v1.9", "v1.9.4"),
        ("v1.8", "v1.8.0"),
        ("forge", "f2.0.1v1.10.1-previous-669-gdfdcbab6"),
    ],
)
def test_info_version(servers: dict[str, MockWebui], behaviour: str, version: str) -> None:
    _, info = generate(servers[behaviour])
    assert info["version"] == version
    assert info["infotexts"][0].endswith(f"Version: {version}")
    assert info["sd_model_name"] == "v1-5-pruned-emaonly"


def test_sdnext_defaults_info_and_version_route(servers: dict[str, MockWebui]) -> None:
    server = servers["sdnext"]
    response = post(server, {"prompt": "fox", "steps": 1})  # steps only to keep it quick
    assert response.status_code == 200, response.text
    params = response.json()["parameters"]
    assert (params["width"], params["height"], params["cfg_scale"]) == (1024, 1024, 6.0)
    assert params["sampler_name"] == "Default" and "scheduler" not in params
    info = json.loads(response.json()["info"])
    for gone in ("sd_model_name", "version", "sd_vae_name", "restore_faces"):
        assert gone not in info
    assert info["cfg_end"] == 1.0 and "detailer" in info and "detailer_model" in info
    assert png(response.json()["images"][0]).size == (1024, 1024)
    version = get(server, "/sdapi/v1/version")
    assert version.status_code == 200
    assert version.json()["app"] == "sd.next" and version.json()["hash"] == "058a7f0c"
    assert get(servers["v1.10"], "/sdapi/v1/version").status_code == 404


# -- error shapes -----------------------------------------------------------------------------


def test_forge_errors() -> None:
    with MockWebui(behaviour="forge", auth=("u", "p")) as server:
        missing = post(server, SMALL)
        expect(missing, 401, {"detail": "Not authenticated"})
        assert missing.headers["www-authenticate"] == "Basic"
        auth = ("u", "p")
        bad = post(server, {**SMALL, "steps": 20.7, "width": "abc"}, auth=auth)
        fractional = "Input should be a valid integer, got a number with a fractional part"
        unparsable = "Input should be a valid integer, unable to parse string as an integer"
        detail = [
            {"type": "int_from_float", "loc": ["body", "steps"], "msg": fractional, "input": 20.7},
            {"type": "int_parsing", "loc": ["body", "width"], "msg": unparsable, "input": "abc"},
        ]
        expect(bad, 422, {"detail": detail})
        script = post(server, {**SMALL, "script_name": "nope"}, auth=auth)
        assert script.status_code == 422 and script.json() == {"detail": "Script 'nope' not found"}
        server.inject(fail_next=1, fail_error="OutOfMemoryError", fail_message="CUDA oom")
        oom = post(server, SMALL, auth=auth)
        # Forge's handler says `message` where A1111 says `errors`.
        forge_oom = {"error": "OutOfMemoryError", "detail": "", "body": "", "message": "CUDA oom"}
        expect(oom, 500, forge_oom)
        ok = post(server, {**SMALL, "distilled_cfg_scale": 2.5}, auth=auth)
        assert ok.status_code == 200 and ok.json()["parameters"]["distilled_cfg_scale"] == 2.5
        modules = requests.get(server.url + "/sdapi/v1/sd-modules", auth=auth, timeout=10)
        assert modules.status_code == 200 and modules.json() == []
        vae = requests.get(server.url + "/sdapi/v1/sd-vae", auth=auth, timeout=10)
        assert vae.status_code == 404


def test_v110_truncates_floats_for_int_fields(servers: dict[str, MockWebui]) -> None:
    data, _ = generate(servers["v1.10"], steps=2.7)
    assert data["parameters"]["steps"] == 2


def test_sdnext_errors_and_control_routes() -> None:
    with MockWebui(behaviour="sdnext", auth=("u", "p")) as server:
        denied = post(server, SMALL)
        unauthorized = sdnext_error(
            "HTTPException", 401, detail="Unauthorized", errors="401: Unauthorized"
        )
        expect(denied, 401, unauthorized)
        auth = ("u", "p")
        server.inject(fail_next=1, fail_error="TypeError", fail_message="bad operand")
        typed = post(server, SMALL, auth=auth)
        assert typed.status_code == 500 and typed.json() == "bad operand"
        server.inject(fail_next=1, fail_error="OutOfMemoryError", fail_message="CUDA oom")
        oom = post(server, SMALL, auth=auth)
        assert oom.json() == sdnext_error("OutOfMemoryError", 500, errors="CUDA oom")
        invalid = post(server, {**SMALL, "steps": "x"}, auth=auth)
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["type"] == "int_parsing"
        for path in ("/sdapi/v1/interrupt", "/sdapi/v1/skip"):
            response = requests.post(server.url + path, auth=auth, timeout=10)
            assert response.status_code == 204 and response.content == b""


# -- substitution -------------------------------------------------------------------------------


def test_substitution_is_reported_in_info_and_infotext() -> None:
    substitute = {"sampler_name": "Euler a", "steps": "4", "width": "40", "cfg_scale": "5"}
    with MockWebui(substitute=substitute) as server:
        data, info = generate(server, sampler_name="DPM++ 2M", cfg_scale=7)
        assert data["parameters"]["sampler_name"] == "DPM++ 2M"  # the echo is the request
        assert (info["sampler_name"], info["steps"], info["width"]) == ("Euler a", 4, 40)
        assert info["cfg_scale"] == 5.0
        assert (
            "Steps: 4, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5.0,"
            in info["infotexts"][0]
        )
        assert "Size: 40x48" in info["infotexts"][0]
        assert png(data["images"][0]).size == (40, 48)
        assert server.generated[-1].sampler_name == "Euler a"


def test_substituted_scheduler_and_checkpoint() -> None:
    with MockWebui(
        substitute={"scheduler": "Exponential", "sd_model_checkpoint": "dreamshaper_8"}
    ) as server:
        _, info = generate(server, sampler_name="Euler", scheduler="Karras")
        assert "Schedule type: Exponential" in info["infotexts"][0]
        assert info["sd_model_name"] == "dreamshaper_8"
        assert server.model_loads == 1
    with MockWebui(behaviour="sdnext", substitute={"scheduler": "karras"}) as server:
        _, info = generate(server, sampler_name="Euler")
        assert "Sampler sigma: karras" in info["infotexts"][0]


def test_bad_substitutions_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot substitute"):
        MockWebui(substitute={"seed": "1"})
    with pytest.raises(ValueError, match="not installed"):
        MockWebui(substitute={"sd_model_checkpoint": "nope"})
    with pytest.raises(ValueError, match="no scheduler field"):
        MockWebui(behaviour="v1.8", substitute={"scheduler": "Karras"})
    with pytest.raises(ValueError, match="unknown behaviour"):
        MockWebui(behaviour="v2.0")


# -- model loads (§7) --------------------------------------------------------------------------

SDXL = {"sd_model_checkpoint": "sd_xl_base_1.0"}


def test_override_loads_and_the_next_request_reloads_the_default() -> None:
    with MockWebui() as server:
        generate(server)
        assert server.model_loads == 0 and server.loaded_model == SD15
        _, info = generate(server, override_settings=SDXL)
        assert info["sd_model_name"] == "sd_xl_base_1.0" and server.model_loads == 1
        generate(server, override_settings=SDXL)  # already loaded
        assert server.model_loads == 1
        _, info = generate(server)  # restore_afterwards: the configured model comes back
        assert info["sd_model_name"] == "v1-5-pruned-emaonly"
        assert server.model_loads == 2 and server.loaded_model == SD15


def test_override_without_restore_keeps_the_model() -> None:
    with MockWebui() as server:
        generate(server, override_settings=SDXL, override_settings_restore_afterwards=False)
        _, info = generate(server)
        assert info["sd_model_name"] == "sd_xl_base_1.0"
        assert server.model_loads == 1


def test_options_post_loads_and_rejects_unknown_models() -> None:
    with MockWebui(model_load_delay=0.2) as server:
        url = server.url + "/sdapi/v1/options"
        started = time.monotonic()
        ok = requests.post(url, json={"sd_model_checkpoint": "dreamshaper_8"}, timeout=10)
        assert ok.status_code == 200 and time.monotonic() - started >= 0.2
        assert server.model_loads == 1
        bad = requests.post(url, json={"sd_model_checkpoint": "x"}, timeout=10)
        expect(bad, 500, webui_error("RuntimeError", errors="model 'x' not found"))
        _, info = generate(server)
        assert info["sd_model_name"] == "dreamshaper_8" and server.model_loads == 1


def test_cli_behaviour_and_substitute_flags() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--port", "0", "--behaviour", "v1.8", "--substitute", "sampler_name=Euler a"]
    args = parser.parse_args(argv)
    out, stop = io.StringIO(), threading.Event()
    thread = threading.Thread(target=lambda: cli.run(args, out=out, stop=stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "listening on " not in out.getvalue():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        url = out.getvalue().split("listening on ")[1].strip()
        assert requests.get(url + "/sdapi/v1/schedulers", timeout=10).status_code == 404
        response = requests.post(url + TXT2IMG, json={**SMALL, "sampler_name": "Euler"}, timeout=10)
        assert json.loads(response.json()["info"])["sampler_name"] == "Euler a"
    finally:
        stop.set()
        thread.join(5)
    with pytest.raises(SystemExit):
        parser.parse_args(["--behaviour", "comfy"])
