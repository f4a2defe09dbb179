"""postcheck.compare: what was sent against what the webui says it used."""

from __future__ import annotations

import json
from typing import Any

import requests

from sdbatch.backends.a1111.infotext import parse_infotext
from sdbatch.backends.a1111.postcheck import compare
from sdbatch.backends.a1111.preflight import inspect_server
from sdbatch.standin.a1111 import MockWebui

V15 = "v1-5-pruned-emaonly.safetensors [6ce0161689]"
SENT: dict[str, Any] = {
    "prompt": "a cat",
    "sampler_name": "DPM++ 2M",
    "scheduler": "Karras",
    "steps": 25,
    "cfg_scale": 7.5,
    "width": 512,
    "height": 768,
    "override_settings": {"sd_model_checkpoint": V15},
}
INFO: dict[str, Any] = {
    "sampler_name": "DPM++ 2M",
    "steps": 25,
    "cfg_scale": 7.5,
    "width": 512,
    "height": 768,
    "sd_model_name": "v1-5-pruned-emaonly",
    "sd_model_hash": "6ce0161689",
    "extra_generation_params": {"Schedule type": "Karras"},
}


def test_all_matching_is_empty() -> None:
    assert compare(SENT, INFO, None) == {}
    assert compare({**SENT, "cfg_scale": 7.5000000001}, {**INFO, "cfg_scale": 7.5}, None) == {}


def test_every_difference() -> None:
    got = {
        **INFO,
        "sampler_name": "Euler a",
        "steps": 20,
        "cfg_scale": 7.0,
        "width": 640,
        "sd_model_name": "dreamshaper_8",
        "sd_model_hash": "0123456789",
        "extra_generation_params": {},
    }
    assert compare(SENT, got, None) == {
        "sampler_name": ["DPM++ 2M", "Euler a"],
        "scheduler": ["Karras", "Automatic"],
        "sd_model_checkpoint": [V15, "dreamshaper_8 [0123456789]"],
        "width": [512, 640],
        "steps": [25, 20],
        "cfg_scale": [7.5, 7.0],
    }


def test_only_sent_fields_are_compared() -> None:
    assert compare({"prompt": "a cat"}, {**INFO, "sampler_name": "Euler", "steps": 3}, None) == {}


INFOTEXT = (
    "a cat, sitting\nNegative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M SDE, "
    "Schedule type: Exponential, CFG scale: 6, Seed: 1, Size: 512x768, Model hash: 6ce0161689, "
    'Model: "v1-5: pruned, emaonly", Version: v1.10.1'
)


def test_infotext_with_quoted_values() -> None:
    params = parse_infotext(INFOTEXT)
    assert params["Model"] == "v1-5: pruned, emaonly"
    assert params["Prompt"] == "a cat, sitting" and params["Negative prompt"] == "blurry"
    sent = {**SENT, "override_settings": {"sd_model_checkpoint": "v1-5: pruned, emaonly"}}
    assert compare(sent, {}, INFOTEXT) == {
        "sampler_name": ["DPM++ 2M", "DPM++ 2M SDE"],
        "scheduler": ["Karras", "Exponential"],
        "cfg_scale": [7.5, 6],
        # This infotext reports other prompts than SENT's: a change (an extension's) too.
        "prompt": ["a cat", "a cat, sitting"],
        "negative_prompt": ["", "blurry"],
    }


def test_automatic_and_the_samplers_default_schedule_are_the_same() -> None:
    automatic = {"sampler_name": "DPM++ 2M", "scheduler": "Automatic"}
    karras = {"sampler_name": "DPM++ 2M", "scheduler": "karras"}
    reported_karras = {
        "sampler_name": "DPM++ 2M",
        "extra_generation_params": {"Schedule type": "Karras"},
    }
    reported_automatic = {"sampler_name": "DPM++ 2M", "extra_generation_params": {}}
    for sent in (automatic, karras):
        for info in (reported_karras, reported_automatic):
            assert compare(sent, info, None) == {}
    euler = {"sampler_name": "Euler", "scheduler": "Karras"}
    assert compare(euler, {"sampler_name": "Euler", "extra_generation_params": {}}, None) == {
        "scheduler": ["Karras", "Automatic"]
    }
    assert (
        compare(
            {**euler, "scheduler": "Automatic"},
            {"sampler_name": "Euler"},
            "x\nSteps: 2, Sampler: Euler, Seed: 1",
        )
        == {}
    )


def test_legacy_combined_names() -> None:
    sent = {"sampler_name": "DPM++ 2M Karras"}
    assert (
        compare(sent, {"sampler_name": "DPM++ 2M Karras", "extra_generation_params": {}}, None)
        == {}
    )
    # a v1.10 server splits an old name and reports its parts
    assert compare(sent, INFO, None) == {}
    assert compare(sent, {**INFO, "extra_generation_params": {}}, None) == {
        "sampler_name": ["DPM++ 2M Karras", "DPM++ 2M"]
    }


def test_sdnext_sigma_and_case() -> None:
    with MockWebui(behaviour="sdnext") as server, requests.Session() as session:
        facts = inspect_server(server.url, session)
    sent = {"sampler_name": "Euler a", "schedulers_sigma": "karras"}
    info = {"sampler_name": "euler a", "extra_generation_params": {}}
    assert compare(sent, info, None, facts) == {"schedulers_sigma": ["karras", "default"]}
    info["extra_generation_params"] = {"Sampler sigma": "karras"}
    assert compare(sent, info, None, facts) == {}


def test_a_substituted_sampler_is_caught() -> None:
    sent = {
        "prompt": "a cat",
        "sampler_name": "DPM++ 2M",
        "steps": 5,
        "seed": 1,
        "width": 64,
        "height": 64,
    }
    with MockWebui(substitute={"sampler_name": "Euler a"}) as server, requests.Session() as session:
        facts = inspect_server(server.url, session)
        body = session.post(f"{server.url}/sdapi/v1/txt2img", json=sent, timeout=30).json()
    info = json.loads(body["info"])
    assert compare(sent, info, info["infotexts"][0], facts) == {
        "sampler_name": ["DPM++ 2M", "Euler a"]
    }
    assert compare(sent, info, info["infotexts"][0]) == {"sampler_name": ["DPM++ 2M", "Euler a"]}
