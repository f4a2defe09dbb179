"""The stand-in's LoRAs, embeddings, styles and hypernetworks: the real v1.10.1 shapes, and what
each does to a txt2img job (a1111-img2img-and-extra-networks.md B1-B7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from golden import REAL, agrees, send

from sdbatch.standin.a1111 import MockWebui
from sdbatch.standin.a1111.catalog import TINY, Catalog
from sdbatch.standin.a1111.networks import Lora

SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 1}


@pytest.fixture
def tiny() -> Iterator[MockWebui]:
    with MockWebui(catalog=TINY) as server:
        yield server


def info_of(server: MockWebui, **payload: Any) -> dict[str, Any]:
    response = requests.post(f"{server.url}/sdapi/v1/txt2img", json={**SMALL, **payload}, timeout=5)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = json.loads(response.json()["info"])
    return info


def params_line(info: dict[str, Any]) -> str:
    return str(info["infotexts"][0]).rsplit("\n", 1)[-1]


@pytest.mark.parametrize("path", ["loras", "embeddings", "prompt-styles", "hypernetworks"])
def test_an_install_without_any_lists_what_the_real_one_did(tiny: MockWebui, path: str) -> None:
    got = requests.get(f"{tiny.url}/sdapi/v1/{path}", timeout=5).json()
    assert got == REAL[f"g_{path}"]["body"]


@pytest.mark.parametrize("path", ["refresh-loras", "refresh-embeddings"])
def test_refreshes_answer_null(tiny: MockWebui, path: str) -> None:
    response = requests.post(f"{tiny.url}/sdapi/v1/{path}", timeout=5)
    assert (response.status_code, response.json()) == (200, None)


def test_a_missing_lora_is_dropped_as_the_real_webui_dropped_it(tiny: MockWebui) -> None:
    agrees(REAL["own/lora_missing"], send(tiny, REAL["own/lora_missing"]))


def test_loras_are_listed_with_their_metadata_in_the_webuis_order(webui: MockWebui) -> None:
    listed = {x["name"]: x for x in requests.get(f"{webui.url}/sdapi/v1/loras", timeout=5).json()}
    detail = listed["add_detail"]
    assert list(detail) == ["name", "alias", "path", "metadata"]
    assert list(detail["metadata"])[:5] == [
        "ss_sd_model_name",
        "ss_resolution",
        "ss_clip_skip",
        "ss_num_train_images",
        "ss_tag_frequency",
    ]
    assert detail["metadata"]["ss_tag_frequency"] == {"img": {"detail": 50}}  # JSON-parsed
    pixel = listed["pixel-art-xl-v1.1"]
    assert pixel["alias"] == "pixelart"  # ss_output_name
    assert pixel["path"].endswith("/Lora/style/pixel-art-xl-v1.1.safetensors")
    assert listed["film_grain"]["metadata"] == {}  # a .pt file has no header


def test_loras_that_load_are_hashed_under_the_name_written(webui: MockWebui) -> None:
    info = info_of(
        webui,
        prompt="a cat <lora:add_detail:0.5> <lora:pixelart:1> <lora:missing:0.8>",
        negative_prompt="<lora:film_grain:1>",  # only the positive prompt is read (B3)
    )
    hashes = info["extra_generation_params"]["Lora hashes"]
    assert [h.split(": ")[0] for h in hashes.split(", ")] == ["add_detail", "pixelart"]
    assert all(len(h.split(": ")[1]) == 12 for h in hashes.split(", "))
    assert f'Lora hashes: "{hashes}"' in params_line(info)
    assert info["infotexts"][0].startswith("a cat <lora:add_detail:0.5>")  # the tags stay


def test_a_multiplier_that_is_no_number_drops_every_lora(webui: MockWebui) -> None:
    info = info_of(webui, prompt="<lora:add_detail:strong> <lora:pixelart:1>")
    assert "Lora hashes" not in info["extra_generation_params"]


def test_a_broken_or_pending_lora() -> None:
    base = Catalog()
    catalog = replace(
        base,
        loras=(*base.loras, Lora("corrupt", broken=True)),
        pending_loras=(Lora("fresh"),),
    )
    with MockWebui(catalog=catalog) as server:

        def names() -> list[str]:
            listed = requests.get(f"{server.url}/sdapi/v1/loras", timeout=5).json()
            return [x["name"] for x in listed]

        assert "corrupt" in names() and "fresh" not in names()
        # The webui rescans for an unknown name before it gives up: the new file is found.
        info = info_of(server, prompt="<lora:corrupt:1> <lora:fresh:1>")
        assert info["extra_generation_params"]["Lora hashes"].startswith("fresh: ")
        requests.post(f"{server.url}/sdapi/v1/refresh-loras", timeout=5)
        assert "fresh" in names()


def test_embeddings_follow_the_width_of_the_loaded_model(webui: MockWebui) -> None:
    def listed() -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(f"{webui.url}/sdapi/v1/embeddings", timeout=5).json()
        return answer

    assert list(listed()["loaded"]) == ["EasyNegative"]
    assert listed()["skipped"]["negativeXL_D"]["shape"] == 2048
    info = info_of(webui, prompt="easynegative cat", negative_prompt="negativeXL_D")
    assert info["extra_generation_params"]["TI hashes"].startswith("EasyNegative: ")
    assert "negativeXL_D" not in info["extra_generation_params"]["TI hashes"]
    requests.post(
        f"{webui.url}/sdapi/v1/options", json={"sd_model_checkpoint": "sd_xl_base_1.0"}, timeout=5
    )
    assert list(listed()["loaded"]) == ["negativeXL_D"]


def test_styles_change_the_prompts_but_not_infos_prompt(webui: MockWebui) -> None:
    info = info_of(
        webui,
        prompt=" a cat ",
        negative_prompt="blurry",
        styles=["nope", "cinematic", "watercolor"],
    )
    assert info["prompt"] == " a cat "
    assert info["styles"] == ["nope", "cinematic", "watercolor"]
    # Unknown: only stripped; `{prompt}` placeholder; no placeholder: appended with ", ".
    merged = "a cat, cinematic lighting, film grain, watercolor painting, soft edges"
    assert info["all_prompts"] == [merged]
    assert info["all_negative_prompts"] == ["blurry, cartoon, drawing, photo"]
    assert info["infotexts"][0].startswith(f"{merged}\nNegative prompt: blurry, cartoon")


def test_styles_and_hypernetworks_are_listed(webui: MockWebui) -> None:
    styles = requests.get(f"{webui.url}/sdapi/v1/prompt-styles", timeout=5).json()
    assert styles[0] == {
        "name": "cinematic",
        "prompt": "{prompt}, cinematic lighting, film grain",
        "negative_prompt": "cartoon, drawing",
    }
    nets = requests.get(f"{webui.url}/sdapi/v1/hypernetworks", timeout=5).json()
    assert nets == [{"name": "anime_3", "path": "/mock/models/hypernetworks/anime_3.pt"}]
