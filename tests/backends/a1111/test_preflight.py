"""preflight against the stand-in webui over real HTTP: problems at their file:line:col with a
did-you-mean from the server's own lists, and the translation each flavour needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ImageOptions

from sdbatch.backends.a1111.preflight import ServerFacts, check_all, inspect_server, preflight
from sdbatch.errors import JobValidationError
from sdbatch.job.loader import Job, load_job
from sdbatch.plan.expand import build_plan
from sdbatch.standin.a1111 import MockWebui
from sdbatch.standin.a1111.catalog import Catalog

REPO = Path(__file__).resolve().parents[3]
V15 = "v1-5-pruned-emaonly.safetensors [6ce0161689]"


def facts_of(server: MockWebui) -> ServerFacts:
    with requests.Session() as session:
        return inspect_server(server.url, session, timeout=5)


def write_job(tmp_path: Path, text: str) -> Job:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return load_job(path)


def where(text: str, line_text: str, token: str) -> tuple[int, int]:
    """1-based (line, col) of `token` on the first line containing `line_text`."""
    for n, line in enumerate(text.splitlines(), start=1):
        if line_text in line:
            return n, line.index(token) + 1
    raise AssertionError(line_text)


@pytest.fixture
def v110(webui: MockWebui) -> ServerFacts:
    return facts_of(webui)


BAD = """\
name: bad
defaults:
  sampler_name: Eular a
  checkpoint: dreamshaper_9
grid:
  scheduler: [Karras, Karas]
prompts:
  - "a cat"
  - {prompt: "a dog", enable_hr: true, denoising_strength: 0.5, hr_upscaler: Lanczoz}
seeds: [1]
"""


def test_every_unknown_value_is_reported_at_its_place(tmp_path: Path, v110: ServerFacts) -> None:
    job = write_job(tmp_path, BAD)
    with pytest.raises(JobValidationError) as err:
        preflight(job, v110)
    file, url = str(tmp_path / "job.yaml"), v110.url
    got = {(p.line, p.column, p.json_path, p.message) for p in err.value.problems}
    assert all(p.file == file for p in err.value.problems)
    assert got == {
        (
            *where(BAD, "sampler_name", "Eular"),
            "$.defaults.sampler_name",
            f"unknown sampler 'Eular a' on {url}: did you mean 'Euler a'?",
        ),
        (
            *where(BAD, "checkpoint", "dream"),
            "$.defaults.checkpoint",
            f"unknown checkpoint 'dreamshaper_9' on {url}: did you mean 'dreamshaper_8'?",
        ),
        (
            *where(BAD, "scheduler", "Karas]"),
            "$.grid.scheduler[1]",
            f"unknown scheduler 'Karas' on {url}: did you mean 'Karras'?",
        ),
        (
            *where(BAD, "hr_upscaler", "Lanczoz"),
            "$.prompts[1].hr_upscaler",
            f"unknown upscaler 'Lanczoz' on {url}: did you mean 'Lanczos'?",
        ),
    }
    assert str(err.value.problems[0]).startswith(f"{file}:3:17: $.defaults.sampler_name: ")


def test_an_excluded_value_is_never_sent_so_not_checked(tmp_path: Path, v110: ServerFacts) -> None:
    text = BAD.replace("Eular a", "Euler a").replace("dreamshaper_9", "dreamshaper_8")
    text = text.replace("Lanczoz", "Lanczos") + "exclude:\n  - {scheduler: Karas}\n"
    preflight(write_job(tmp_path, text), v110)


CATS = load_job(REPO / "jobs" / "cats.yaml")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("v1.10", {"sampler_name": "DPM++ 2M", "scheduler": "Karras"}),
        ("v1.9", {"sampler_name": "DPM++ 2M", "scheduler": "Karras"}),
        ("forge", {"sampler_name": "DPM++ 2M", "scheduler": "Karras"}),
        ("v1.8", {"sampler_name": "DPM++ 2M Karras"}),
        ("sdnext", {"sampler_name": "DPM++ 2M", "schedulers_sigma": "karras"}),
    ],
)
def test_cats_passes_everywhere_with_the_intended_schedule(
    behaviour: str, expected: dict[str, str], image_options: ImageOptions
) -> None:
    with MockWebui(behaviour=behaviour) as server:
        facts = facts_of(server)
        held = image_options(server.url)
        translation = preflight(CATS, facts)
    assert facts.flavour == {"forge": "forge", "sdnext": "sdnext"}.get(behaviour, "a1111")
    for item in build_plan(CATS):
        sent = translation.apply(item.payload)
        schedule = {
            k: sent[k] for k in ("sampler_name", "scheduler", "schedulers_sigma") if k in sent
        }
        assert schedule == expected
        pinned = ("override_settings", "override_settings_restore_afterwards")
        assert {k: v for k, v in sent.items() if k not in (*schedule, *pinned)} == {
            k: v for k, v in item.payload.items() if k not in ("sampler_name", "scheduler")
        }
        # cats names no checkpoint: each payload names the one the webui had loaded, and
        # every option that changes the image at the webui's value.
        assert sent["override_settings"] == {
            **held,
            "sd_model_checkpoint": facts.current_checkpoint,
        }


def test_checkpoint_aliases_become_the_title(tmp_path: Path, v110: ServerFacts) -> None:
    sha = next(c.sha256 for c in v110.checkpoints if c.model_name == "dreamshaper_8")
    job = write_job(
        tmp_path,
        "prompts: [a cat]\nseeds: [1]\ngrid:\n  checkpoint: [v1-5-pruned-emaonly, 6ce0161689,"
        f" sd_xl_base_1.0.safetensors, {sha}, '{V15}']\n"
        "defaults: {hr_checkpoint_name: v1-5-pruned-emaonly.safetensors}\n",
    )
    translation = preflight(job, v110)
    sent = [translation.apply(item.payload) for item in build_plan(job)]
    titles = [s["override_settings"]["sd_model_checkpoint"] for s in sent]
    xl = next(c.title for c in v110.checkpoints if c.model_name == "sd_xl_base_1.0")
    ds = next(c.title for c in v110.checkpoints if c.model_name == "dreamshaper_8")
    assert titles == [V15, V15, xl, ds, V15]
    assert all(s["override_settings_restore_afterwards"] is False for s in sent)
    assert all(s["hr_checkpoint_name"] == V15 for s in sent)


def test_a_job_without_a_checkpoint_pins_the_one_loaded_at_preflight(
    webui: MockWebui, v110: ServerFacts, image_options: ImageOptions
) -> None:
    held = image_options(webui.url)
    translation = preflight(CATS, v110)
    # Another client (or an earlier job) switches the model and Clip skip after the preflight.
    change = {"sd_model_checkpoint": "dreamshaper_8", "CLIP_stop_at_last_layers": 2}
    requests.post(f"{webui.url}/sdapi/v1/options", json=change)
    sent = translation.apply(next(iter(build_plan(CATS))).payload)
    assert sent["override_settings"] == {**held, "sd_model_checkpoint": V15}
    assert held["CLIP_stop_at_last_layers"] == 1
    assert sent["override_settings_restore_afterwards"] is False


def test_every_overridden_option_is_sent_by_every_payload(
    tmp_path: Path, webui: MockWebui, v110: ServerFacts, image_options: ImageOptions
) -> None:
    held = image_options(webui.url)
    job = write_job(
        tmp_path,
        "seeds: [1]\nprompts:\n"
        "  - {prompt: a cat, override_settings: {CLIP_stop_at_last_layers: 2}}\n"
        "  - a dog\n",
    )
    sent = [preflight(job, v110).apply(item.payload) for item in build_plan(job)]
    settings = {s["prompt"]: s["override_settings"] for s in sent}
    assert settings == {
        "a cat": {**held, "CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": V15},
        # The server's value when the run began, not whatever the first payload left behind.
        "a dog": {**held, "CLIP_stop_at_last_layers": 1.0, "sd_model_checkpoint": V15},
    }


def test_the_pinned_checkpoint_must_be_on_every_webui(tmp_path: Path) -> None:
    other = Catalog(checkpoints=Catalog().checkpoints[1:])
    with MockWebui() as first, MockWebui(catalog=other) as second:
        facts = [facts_of(first), facts_of(second)]
    with pytest.raises(JobValidationError) as err:
        check_all(CATS, facts)
    (problem,) = err.value.problems
    assert f"which {facts[1].url} does not have: set defaults.checkpoint" in problem.message


def test_aliases_and_sentinels_are_spelled_for_the_server(
    tmp_path: Path, webui: MockWebui, v110: ServerFacts, image_options: ImageOptions
) -> None:
    job = write_job(
        tmp_path,
        "prompts: [a cat]\nseeds: [1]\ndefaults: {sampler_name: k_euler_a, scheduler: "
        "sgm_uniform, hr_sampler_name: Use same sampler, hr_scheduler: Automatic}\n",
    )
    sent = preflight(job, v110).apply(next(iter(build_plan(job))).payload)
    assert sent == {
        "sampler_name": "Euler a",
        "scheduler": "SGM Uniform",
        "prompt": "a cat",
        "seed": 1,
        "override_settings": {**image_options(webui.url), "sd_model_checkpoint": V15},
        "override_settings_restore_afterwards": False,
    }


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [("", "Karras"), ("scheduler: Exponential, ", "Exponential")],
)
def test_old_combined_name_on_a_scheduler_server_is_split(
    tmp_path: Path, v110: ServerFacts, scheduler: str, expected: str
) -> None:
    # As v1.10 does itself: the name's schedule only when the payload names none.
    job = write_job(
        tmp_path,
        f"prompts: [a cat]\ndefaults: {{{scheduler}sampler_name: DPM++ 2M Karras}}\n",
    )
    sent = preflight(job, v110).apply(next(iter(build_plan(job))).payload)
    assert (sent["sampler_name"], sent["scheduler"]) == ("DPM++ 2M", expected)


def test_a_combined_name_with_a_two_word_schedule(tmp_path: Path, v110: ServerFacts) -> None:
    job = write_job(tmp_path, "prompts: [a cat]\ndefaults: {sampler_name: Euler SGM Uniform}\n")
    sent = preflight(job, v110).apply(next(iter(build_plan(job))).payload)
    assert (sent["sampler_name"], sent["scheduler"]) == ("Euler", "SGM Uniform")


def test_legacy_server_without_the_combined_name(tmp_path: Path) -> None:
    text = (
        "prompts: [a cat]\ngrid:\n  sampler_name: [Euler, DPM++ 2M]\n"
        "defaults: {scheduler: Karras}\n"
    )
    job = write_job(tmp_path, text)
    with MockWebui(behaviour="v1.8") as server, pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(server))
    (problem,) = err.value.problems
    assert (problem.line, problem.column, problem.json_path) == (4, 23, "$.defaults.scheduler")
    assert problem.message.startswith(
        f"this webui ({server.url}, no /sdapi/v1/schedulers) has no sampler 'Euler Karras'"
    )


def test_sdnext_is_case_insensitive_and_has_few_sigmas(tmp_path: Path) -> None:
    job = write_job(
        tmp_path, "prompts: [a cat]\ndefaults: {sampler_name: euler a, scheduler: Beta}\n"
    )
    with MockWebui(behaviour="sdnext") as server, pytest.raises(JobValidationError) as err:
        preflight(job, facts_of(server))
    (problem,) = err.value.problems
    assert problem.json_path == "$.defaults.scheduler"
    assert "schedulers_sigma" in problem.message and "'Beta'" in problem.message
    job = write_job(
        tmp_path, "prompts: [a cat]\ndefaults: {sampler_name: euler a, scheduler: Automatic}\n"
    )
    with MockWebui(behaviour="sdnext") as server:
        sent = preflight(job, facts_of(server)).apply(next(iter(build_plan(job))).payload)
    assert sent["sampler_name"] == "Euler a" and "scheduler" not in sent
    assert "schedulers_sigma" not in sent


@pytest.fixture
def small_server() -> Iterator[MockWebui]:
    catalog = Catalog()
    with MockWebui(catalog=Catalog(checkpoints=catalog.checkpoints[:1])) as server:
        yield server


def test_servers_lacking_a_checkpoint_are_not_mixed(
    tmp_path: Path, webui: MockWebui, small_server: MockWebui
) -> None:
    job = write_job(
        tmp_path, "prompts: [a cat]\ngrid:\n  checkpoint: [v1-5-pruned-emaonly, dreamshaper_8]\n"
    )
    full, small = facts_of(webui), facts_of(small_server)
    assert len(check_all(job, [full, full])) == 2
    with pytest.raises(JobValidationError) as err:
        check_all(job, [full, small])
    (problem,) = err.value.problems
    assert problem.json_path == "$.grid.checkpoint[1]"
    assert problem.message.startswith(
        f"{small.url} has no checkpoint 'dreamshaper_8' that the job uses (it is on {full.url})"
    )


def test_an_integer_option_is_sent_as_an_integer(tmp_path: Path, webui: MockWebui) -> None:
    # /options reports Clip skip 2 as 2.0; v1.10.1 given 2.0 breaks (own/clip_float_*).
    requests.post(f"{webui.url}/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}, timeout=5)
    facts = facts_of(webui)
    assert facts.options["CLIP_stop_at_last_layers"] == 2.0
    job = write_job(
        tmp_path,
        "seeds: [1]\nprompts:\n  - a dog\n"
        "  - {prompt: a cat, override_settings: {CLIP_stop_at_last_layers: 3.0, eta_ddim: 1}}\n",
    )
    sent = [preflight(job, facts).apply(item.payload) for item in build_plan(job)]
    values = [s["override_settings"]["CLIP_stop_at_last_layers"] for s in sent]
    assert [(v, type(v)) for v in values] == [(2, int), (3, int)]
    assert sent[1]["override_settings"]["eta_ddim"] == 1  # a float option is left alone
