"""LoRAs, hypernetworks, styles and embeddings a job names, checked against the stand-in over
real HTTP before anything is generated, and each image's `Lora hashes` after."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image
from test_preflight import facts_of, where, write_job

from sdbatch.backends.a1111.applied import dropped_networks
from sdbatch.backends.a1111.infotext import parse_infotext
from sdbatch.backends.a1111.preflight import preflight
from sdbatch.errors import JobValidationError
from sdbatch.job.prompttags import renderings, tags
from sdbatch.job.templates import parse_template
from sdbatch.standin.a1111 import MockWebui
from sdbatch.standin.a1111.catalog import Catalog
from sdbatch.standin.a1111.networks import Lora

REAL = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "real-a1111" / "exchanges.json").read_text()
)
LISTS = ("/sdapi/v1/loras", "/sdapi/v1/hypernetworks", "/sdapi/v1/prompt-styles")


def paths(server: MockWebui, *wanted: str) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.requests if r.path in wanted]


def txt2img_count(server: MockWebui) -> int:
    return sum(r.path == "/sdapi/v1/txt2img" for r in server.requests)


def infotext_of(out: Path, row: dict[str, Any]) -> str:
    with Image.open(out / row["file"]) as img:
        return str(img.info["parameters"])


@pytest.fixture
def logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """What preflight logs; a CLI run earlier in this process stops "sdbatch" propagating."""
    monkeypatch.setattr(logging.getLogger("sdbatch"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="sdbatch")
    yield caplog


GOOD = """\
name: good
defaults: {steps: 2, width: 64, height: 64, negative_prompt: "EasyNegative, blurry"}
prompts:
  - "a cat <lora:add_detail:0.8> <lora:pixelart:1> <hypernet:anime_3:0.5>"
  - {prompt: "a dog", styles: [cinematic, watercolor]}
seeds: [1]
"""


def test_what_exists_passes_and_shows_in_the_infotext(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(GOOD, encoding="utf-8")
    with MockWebui() as server:
        run_cli("run", str(job), "--server", server.url, "--out", str(out))
    cat, dog = sorted(rows(out), key=lambda r: str(r["payload"]["prompt"]))
    assert [cat["status"], dog["status"]] == ["ok", "ok"]
    params = parse_infotext(infotext_of(out, cat))
    # Each LoRA under the name the prompt used, the alias too (B3).
    assert [p.split(": ")[0] for p in params["Lora hashes"].split(", ")] == [
        "add_detail",
        "pixelart",
    ]
    assert params["TI hashes"].startswith("EasyNegative: ")
    styled = parse_infotext(infotext_of(out, dog))
    assert (
        styled["Prompt"] == "a dog, cinematic lighting, film grain, watercolor painting, soft edges"
    )
    assert styled["Negative prompt"] == "EasyNegative, blurry, cartoon, drawing, photo"


BAD = """\
name: bad
defaults: {steps: 2, width: 64, height: 64}
prompts:
  - "a cat <lora:add_detial:0.8>"
  - {prompt: "a dog <hypernet:anime_4:0.5>", styles: [cinematc]}
seeds: [1]
"""


def test_unknown_names_are_refused_at_their_place(tmp_path: Path, webui: MockWebui) -> None:
    job = write_job(tmp_path, BAD)
    with pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(webui))
    url = webui.url
    assert {(p.line, p.column, p.json_path, p.message) for p in err.value.problems} == {
        (
            *where(BAD, "a cat", '"a cat'),
            "$.prompts[0]",
            f"unknown LoRA 'add_detial' on {url}: did you mean 'add_detail'?",
        ),
        (
            *where(BAD, "a dog", '"a dog'),
            "$.prompts[1].prompt",
            f"unknown hypernetwork 'anime_4' on {url}: did you mean 'anime_3'?",
        ),
        (
            *where(BAD, "a dog", "cinematc"),
            "$.prompts[1].styles[0]",
            f"unknown style 'cinematc' on {url}: did you mean 'cinematic'?",
        ),
    }
    # Looked for again once after a rescan, as a freshly copied file would need (B8).
    assert paths(webui, *LISTS, "/sdapi/v1/refresh-loras") == [
        "GET /sdapi/v1/loras",
        "POST /sdapi/v1/refresh-loras",
        "GET /sdapi/v1/loras",
        "GET /sdapi/v1/hypernetworks",
        "GET /sdapi/v1/prompt-styles",
    ]


def test_the_cli_exits_2_and_generates_nothing(
    run_cli: RunCli, tmp_path: Path, webui: MockWebui
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(BAD, encoding="utf-8")
    result = run_cli("run", str(job), "--server", webui.url, "--out", str(tmp_path / "o"), expect=2)
    assert f"{job}:4:5: $.prompts[0]: unknown LoRA 'add_detial'" in result.err
    assert "did you mean 'add_detail'?" in result.err
    assert txt2img_count(webui) == 0


def test_a_lora_on_no_list_is_refused_even_by_case(tmp_path: Path, webui: MockWebui) -> None:
    # Names are exact: the webui's dict lookup would miss "Add_Detail".
    job = write_job(tmp_path, 'prompts: ["<lora:Add_Detail:1> a cat"]\n')
    with pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(webui))
    assert err.value.problems[0].message.endswith("did you mean 'add_detail'?")


def test_a_weight_sweep_passes_and_each_row_has_its_weight(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: sweep\ndefaults: {steps: 2, width: 64, height: 64}\n"
        "vars:\n  w: [0.2, 0.5, 0.8]\nprompts:\n  - 'a cat <lora:pixelart:{w}>'\nseeds: [7]\n"
        "sheet: {x: w}\n",
        encoding="utf-8",
    )
    with MockWebui() as server:
        run_cli("run", str(job), "--server", server.url, "--out", str(out))
    found = sorted(rows(out), key=lambda r: r["vars"]["w"])  # rows come as images finish
    assert [r["vars"] for r in found] == [{"w": 0.2}, {"w": 0.5}, {"w": 0.8}]
    assert [r["payload"]["prompt"] for r in found] == [
        f"a cat <lora:pixelart:{w}>" for w in (0.2, 0.5, 0.8)
    ]
    assert all(r["status"] == "ok" for r in found)
    assert all("Lora hashes: " in infotext_of(out, r) for r in found)
    # The weight is the sheet's only axis: three 64-pixel cells side by side, no y labels.
    (sheet,) = (out / "sheets").rglob("*.png")
    with Image.open(sheet) as image:
        assert 3 * 64 <= image.width < 4 * 64 + 3 * 16  # cells and the gaps between them


def test_a_name_from_a_variable_is_checked_for_each_value(tmp_path: Path, webui: MockWebui) -> None:
    job = write_job(
        tmp_path,
        "vars:\n  net: [add_detail, add_detial]\n  w: [0.5, heavy]\n"
        "prompts:\n  - 'a cat <lora:{net}:{w}>'\n",
    )
    with pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(webui))
    assert [p.message for p in err.value.problems] == [
        "the multiplier 'heavy' in <lora:add_detail:heavy> (vars: w='heavy') is not a number: "
        "the webui would apply no LoRA at all to that image",
        "the multiplier 'heavy' in <lora:add_detial:heavy> (vars: w='heavy') is not a number: "
        "the webui would apply no LoRA at all to that image",
        f"unknown LoRA 'add_detial' (vars: net='add_detial') on {webui.url}: "
        "did you mean 'add_detail'?",
    ]


def test_a_lora_copied_in_after_startup_is_found_after_one_refresh(tmp_path: Path) -> None:
    catalog = replace(Catalog(), pending_loras=(Lora("fresh_from_the_trainer"),))
    job = write_job(tmp_path, "prompts: ['<lora:fresh_from_the_trainer:1> a cat']\n")
    with MockWebui(catalog=catalog) as server:
        first = requests.get(f"{server.url}/sdapi/v1/loras", timeout=5).json()
        assert "fresh_from_the_trainer" not in [x["name"] for x in first]
        preflight(job, facts_of(server))
        assert paths(server, "/sdapi/v1/refresh-loras") == ["POST /sdapi/v1/refresh-loras"]


def test_the_lists_are_read_only_when_the_job_names_something(
    tmp_path: Path, webui: MockWebui
) -> None:
    preflight(write_job(tmp_path, "prompts: [a cat]\n"), facts_of(webui))
    assert paths(webui, *LISTS, "/sdapi/v1/refresh-loras") == []
    # Any word may be an embedding, and the list is small: it is always read.
    assert paths(webui, "/sdapi/v1/embeddings") == ["GET /sdapi/v1/embeddings"]


def test_embeddings_and_negative_tags_are_only_warned_about(
    tmp_path: Path, webui: MockWebui, logged: pytest.LogCaptureFixture
) -> None:
    job = write_job(
        tmp_path,
        "defaults: {negative_prompt: 'negativeXL_D, <lora:add_detail:1>'}\n"
        "prompts: ['a cat, EasyNegatve <foo:bar>']\n",
    )
    preflight(job, facts_of(webui))  # nothing refused
    text = logged.text
    assert "$.defaults.negative_prompt: <lora:add_detail:1> is not applied" in text
    assert "$.prompts[0]: <foo:bar>: unknown extra network type 'foo'" in text
    assert "the embedding 'negativeXL_D' is installed on" in text and "but skipped" in text
    assert "'EasyNegatve' is no embedding on" in text and "did you mean 'EasyNegative'?" in text
    refreshes = paths(webui, "/sdapi/v1/refresh-embeddings")
    assert refreshes == ["POST /sdapi/v1/refresh-embeddings"]


def test_a_lora_the_webui_drops_is_a_mismatch(run_cli: RunCli, tmp_path: Path) -> None:
    # Listed, but its file is broken: the webui skips it and says so only on its console (B4).
    base = Catalog()
    catalog = replace(base, loras=(*base.loras, Lora("corrupt_detail", broken=True)))
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: dropped\ndefaults: {steps: 2, width: 64, height: 64}\n"
        "prompts: ['a cat <lora:corrupt_detail:0.8> <lora:add_detail:0.5>']\nseeds: [1]\n",
        encoding="utf-8",
    )
    with MockWebui(catalog=catalog) as server:
        run_cli("run", str(job), "--server", server.url, "--out", str(out))
    (row,) = rows(out)
    assert row["status"] == "mismatch"
    asked, listed, note = row["mismatch"]["lora"]
    assert (asked, listed) == (["corrupt_detail", "add_detail"], ["add_detail"])
    assert note.startswith("the webui dropped <lora:corrupt_detail:0.8>: its Lora hashes")


def test_an_embedding_the_next_checkpoint_cannot_use_is_a_mismatch(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # Listed as loaded at preflight (for the model loaded then), skipped by the SDXL model the
    # grid switches to: only that image's TI hashes lack it (B5).
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: ti\ndefaults: {steps: 2, width: 64, height: 64, negative_prompt: EasyNegative}\n"
        "grid: {checkpoint: [v1-5-pruned-emaonly, sd_xl_base_1.0]}\n"
        "prompts: [a cat]\nseeds: [1]\n",
        encoding="utf-8",
    )
    with MockWebui() as server:
        run_cli("run", str(job), "--server", server.url, "--out", str(out))
    by_model = {r["cell"]["checkpoint"]: r for r in rows(out)}
    assert by_model["v1-5-pruned-emaonly"]["status"] == "ok"
    xl = by_model["sd_xl_base_1.0"]
    assert xl["status"] == "mismatch"
    asked, listed, note = xl["mismatch"]["embedding"]
    assert (asked, listed) == (["EasyNegative"], [])
    assert note.startswith("the webui did not apply the embedding 'EasyNegative'")


def test_told_not_to_list_hashes_the_webuis_silence_is_no_evidence() -> None:
    params = {"Steps": "2", "TI hashes": "other: 1234"}
    sent = {"prompt": "a cat <lora:add_detail:1>", "negative_prompt": "EasyNegative"}
    assert set(dropped_networks(sent, params, ["EasyNegative"])) == {"lora", "embedding"}
    told = {
        **sent,
        "override_settings": {
            "lora_add_hashes_to_infotext": False,
            "textual_inversion_add_hashes_to_infotext": False,
        },
    }
    assert dropped_networks(told, params, ["EasyNegative"]) == {}
    # A tag is no word to CLIP, and a name inside a longer word is not that embedding.
    assert (
        dropped_networks(
            {"prompt": "<lora:EasyNegative:1>"},
            {"Lora hashes": "EasyNegative: 1"},
            ["EasyNegative"],
        )
        == {}
    )
    assert dropped_networks({"prompt": "EasyNegatives"}, params, ["EasyNegative"]) == {}


def test_the_real_webuis_silent_drop_is_caught() -> None:
    real = REAL["own/lora_missing"]
    params = parse_infotext(real["images"][0]["text"]["parameters"])
    assert "Lora hashes" not in params  # the only trace an API client gets
    diffs = dropped_networks(real["request"]["json"], params)
    assert diffs["lora"][:2] == [["missing"], []]
    assert "<lora:missing:0.8>" in diffs["lora"][2]
    # Told not to list them, the webui's silence is no evidence.
    told = {**real["request"]["json"], "override_settings": {"lora_add_hashes_to_infotext": False}}
    assert dropped_networks(told, params) == {}


def test_tags_are_parsed_as_the_webui_does() -> None:
    (lora, net) = tags("x <lora:a b,c:0.5:te=1> y <hypernet:h> <not a tag>")
    assert (lora.kind, lora.name, lora.args, lora.bad_number()) == (
        "lora",
        "a b,c",
        ("0.5", "te=1"),
        None,
    )
    assert (net.kind, net.name, net.args) == ("hypernet", "h", ())
    assert tags("<lora:x:0.5:dyn=a>")[0].bad_number() == "dyn=a"


def test_a_huge_template_varies_one_part_at_a_time(tmp_path: Path) -> None:
    options = "|".join(f"o{i}" for i in range(40))
    job = write_job(tmp_path, f"prompts: ['<lora:{{{options}}}:1> {{{options}}}']\n")
    texts = [text for text, _ in renderings(parse_template(job.prompts[0].text), job)]
    assert len(texts) == 80  # not 1600
    assert {t.split(":")[1] for t in texts} == {f"o{i}" for i in range(40)}


def test_a_prompts_file_line_is_reported_at_its_line(tmp_path: Path, webui: MockWebui) -> None:
    (tmp_path / "more.txt").write_text("# cats\na cat\n<lora:pixelart:1> <lora:pixlart:1>\n")
    job = write_job(tmp_path, "prompts_file: more.txt\n")
    with pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(webui))
    (problem,) = err.value.problems
    assert (problem.file, problem.line, problem.json_path) == (
        str(tmp_path / "more.txt"),
        3,
        "$.prompts_file",
    )
    assert problem.message.endswith("did you mean 'pixelart'?")
