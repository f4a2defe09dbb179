"""Contact sheets: built from the manifest and image files of real runs against the stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RunCli
from conftest import manifest_rows as rows
from PIL import Image, ImageChops, ImageStat

from sdbatch.errors import UsageError
from sdbatch.pictures.sheet import BuiltSheet, build_sheets, render_sheets, sheet_command
from sdbatch.pictures.sheetdraw import PLACEHOLDER, SheetLayout
from sdbatch.standin.a1111 import MockWebui

STEPS, CFGS = [10, 20, 30, 40], [3, 5, 7, 9]


def run(run_cli: RunCli, webui: MockWebui, tmp_path: Path, expect: int = 0, **job: Any) -> Path:
    """Run a job (64x64 images unless it says otherwise) and return its output dir."""
    job = {"name": "t", "prompts": ["a <cat>"], "seeds": [7], **job}
    job["defaults"] = {"width": 64, "height": 64, **job.get("defaults", {})}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    out = tmp_path / "out"
    run_cli("run", str(path), "--server", webui.url, "--out", str(out), expect=expect)
    return out


def sweep(run_cli: RunCli, webui: MockWebui, tmp_path: Path, expect: int = 0) -> Path:
    return run(run_cli, webui, tmp_path, expect, grid={"steps": STEPS, "cfg_scale": CFGS})


def has_ink(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Dark text pixels on the white label background."""
    low = image.crop(box).convert("L").getextrema()[0]
    return isinstance(low, (int, float)) and low < 100


def region_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean)


def is_placeholder(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    colours = image.crop(box).convert("RGB").getcolors(maxcolors=1 << 16) or []
    most = max(colours)  # (count, colour)
    return most[1] == PLACEHOLDER and most[0] > 0.6 * (box[2] - box[0]) * (box[3] - box[1])


def cell_of(row: dict[str, Any]) -> tuple[int, int]:
    return CFGS.index(row["payload"]["cfg_scale"]), STEPS.index(row["payload"]["steps"])


def only(built: list[BuiltSheet]) -> tuple[Image.Image, SheetLayout]:
    assert len(built) == 1
    with Image.open(built[0].path) as image:
        return image.copy(), built[0].layout


def test_sweep_gives_one_labelled_sheet_in_plan_order(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = sweep(run_cli, webui, tmp_path)
    image, lay = only(render_sheets(out, x="cfg_scale", y="steps"))
    assert image.size == (lay.margin_left + 4 * lay.cell_w, lay.margin_top + 4 * lay.cell_h)
    assert (lay.cols, lay.rows, lay.thumb_w, lay.thumb_h) == (4, 4, 64, 64)
    assert lay.cell_w >= 64 + lay.gap and lay.gap >= 6
    assert [label.text for label in lay.col_labels] == ["3", "5", "7", "9"]
    assert [label.text for label in lay.row_labels] == ["10", "20", "30", "40"]
    for label in (*lay.col_labels, *lay.row_labels):
        assert has_ink(image, label.box), label
    assert lay.title[0] == "x: cfg_scale   y: steps"
    assert "prompt: a <cat>" in " ".join(lay.title) and "seed: 7" in " ".join(lay.title)
    for row in rows(out):
        box = lay.slot_box(*cell_of(row), 0)
        with Image.open(out / row["file"]) as source:
            assert region_diff(image.crop(box), source) < 2, row["file"]
    assert built_names(out) == ["cfg_scale-x-steps", "cfg_scale-x-steps/sheet-all.png"]


def built_names(out: Path) -> list[str]:
    return sorted(p.relative_to(out / "sheets").as_posix() for p in (out / "sheets").rglob("*"))


def test_partial_run_gets_placeholders_where_images_are_missing_or_failed(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    webui.inject(fail_next=1, fail_status=422, fail_message="bad <payload>")
    out = sweep(run_cli, webui, tmp_path, expect=1)
    all_rows = rows(out)
    failed = [r for r in all_rows if r["status"] == "failed"]
    ok = [r for r in all_rows if r["status"] == "ok"]
    assert len(failed) == 1 and len(ok) == 15
    # A crash that lost half the rows (a checkerboard, so every value keeps a row: a value no
    # row mentions cannot be shown), and a file deleted by hand.
    checker = [sum(cell_of(r)) % 2 for r in ok]
    kept = [r for r, odd in zip(ok, checker, strict=True) if odd]
    dropped = [r for r, odd in zip(ok, checker, strict=True) if not odd]
    (out / kept[0]["file"]).unlink()
    (out / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*kept, *failed]) + '{"id": "torn'
    )
    image, lay = only(render_sheets(out, x="cfg_scale", y="steps"))
    assert (lay.cols, lay.rows) == (4, 4)
    for row in [*dropped, *failed, kept[0]]:
        assert is_placeholder(image, lay.slot_box(*cell_of(row), 0)), row["payload"]
    for row in kept[1:]:
        assert not is_placeholder(image, lay.slot_box(*cell_of(row), 0))


def test_a_later_success_supersedes_a_failed_payload(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    webui.inject(fail_next=1, fail_status=422)
    sweep(run_cli, webui, tmp_path, expect=1)
    out = sweep(run_cli, webui, tmp_path)  # the resume makes the failed one
    image, lay = only(render_sheets(out, x="cfg_scale", y="steps"))
    assert not any(is_placeholder(image, lay.slot_box(c, r, 0)) for c in range(4) for r in range(4))


def test_budget_tiles_into_parts_that_cover_the_grid(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = sweep(run_cli, webui, tmp_path)
    built = render_sheets(out, x="cfg_scale", y="steps", budget_px=60_000)
    assert len(built) > 1
    assert [b.path.name for b in built] == [
        f"sheet-all-part{n}.png" for n in range(1, 1 + len(built))
    ]
    assert sum(b.layout.cols * b.layout.rows for b in built) == 16
    labels = [(lb.text for lb in b.layout.col_labels) for b in built]
    assert {t for group in labels for t in group} == {"3", "5", "7", "9"}
    for b in built:
        with Image.open(b.path) as image:
            assert image.width * image.height <= 60_000
            assert image.size == (b.layout.width, b.layout.height)
    parts = sorted(f"cfg_scale-x-steps/{b.path.name}" for b in built)
    assert built_names(out) == ["cfg_scale-x-steps", *parts]


def test_budget_shrinks_cells_before_tiling(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    out = run(
        run_cli,
        webui,
        tmp_path,
        defaults={"width": 512, "height": 512},
        grid={"steps": [10, 20], "cfg_scale": [3, 5]},
    )
    image, lay = only(render_sheets(out, x="cfg_scale", y="steps", budget_px=400_000))
    assert 128 <= lay.cell_w < 512 and image.width * image.height <= 400_000


def test_z_splits_sheets_and_fields_can_be_resliced(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    grid = {"sampler_name": ["Euler", "DPM++ 2M"], "steps": [10, 20], "cfg_scale": [3, 5]}
    out = run(run_cli, webui, tmp_path, grid=grid, seeds=[1, 2, 3])
    built = render_sheets(out, x="cfg_scale", y="steps", z="sampler_name")
    assert [b.path.name for b in built] == ["sheet-Euler.png", "sheet-DPM++_2M.png"]
    for b in built:
        # Three seeds per cell, side by side in a 2x2 sub-grid, each in its own slot.
        assert (b.layout.cols, b.layout.rows, b.layout.slot_cols, b.layout.slot_rows) == (
            2,
            2,
            2,
            2,
        )
        assert "seeds: 1, 2, 3" in " ".join(b.layout.title)
    # Re-sliced: sampler across, steps down; the cfg values now split the sheets. The job's
    # own slicing stays, in its own folder.
    job_sheets = {b.path: b.path.read_bytes() for b in built}
    paths = sheet_command(out, x="sampler_name", y="steps")
    assert [p.name for p in paths] == ["sheet-all-3.png", "sheet-all-5.png"]
    assert {p.parent.name for p in paths} == {"sampler_name-x-steps"}
    assert {p: p.read_bytes() for p in job_sheets} == job_sheets
    # Defaults: the last grid axis across, the one before it down, the rest split.
    paths = sheet_command(out)
    assert [p.name for p in paths] == ["sheet-all-Euler.png", "sheet-all-DPM++_2M.png"]


def test_sheet_command_rejects_bad_fields_and_dirs(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.jsonl"):
        sheet_command(tmp_path)
    out = sweep(run_cli, webui, tmp_path)
    with pytest.raises(UsageError, match="did you mean 'cfg_scale'"):
        sheet_command(out, x="cfgscale")
    with pytest.raises(UsageError, match=r"same in every image.*steps"):
        sheet_command(out, x="steps", y="width")
    with pytest.raises(UsageError, match="different fields"):
        sheet_command(out, x="steps", y="steps")


def test_template_rows_split_by_template_not_by_the_prompt_an_axis_makes(tmp_path: Path) -> None:
    """Rows with vars and templates (and older ones without): a prompt that follows from the
    axis var and the template does not split sheets; the template does."""
    lines = []
    for t, template in enumerate(["a {animal}", "a fat {animal}"]):
        for a, animal in enumerate(["cat", "dog", "owl"]):
            prompt = template.replace("{animal}", animal)
            lines.append(
                {
                    "id": f"{t}{a}",
                    "status": "ok",
                    "file": f"{t}{a}.png",
                    "seed": 1,
                    "payload_index": 3 * t + a,
                    "vars": {"animal": animal},
                    "template": template,
                    "cell": {},
                    "payload": {"prompt": prompt, "seed": 1, "width": 8, "height": 8},
                }
            )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    built = render_sheets(tmp_path, x="animal", y=None)
    assert len(built) == 2
    assert [lb.text for lb in built[0].layout.col_labels] == ["cat", "dog", "owl"]
    assert build_sheets(tmp_path, x="animal", y="template") == [
        tmp_path / "sheets/animal-x-template/sheet-all.png"
    ]


ROOT = Path(__file__).resolve().parents[2]


def test_jobs_sweep_yaml_draws_one_4x4_sheet_and_a_gallery(
    webui: MockWebui, run_cli: RunCli, tmp_path: Path
) -> None:
    """The acceptance run: jobs/sweep.yaml as shipped, its `sheet:` drawn at the end of the run."""
    out = tmp_path / "sweep"
    run_cli("run", str(ROOT / "jobs" / "sweep.yaml"), "--server", webui.url, "--out", str(out))
    assert (out / "index.html").is_file()
    drawn = sorted((out / "sheets" / "cfg_scale-x-steps").iterdir())
    assert [p.name for p in drawn] == ["sheet-all.png"]
    with Image.open(drawn[0]) as image:
        first = image.copy()
    again, lay = only(render_sheets(out, x="cfg_scale", y="steps"))  # the layout behind it
    assert first.size == again.size
    assert (lay.cols, lay.rows) == (4, 4)
    assert first.size == (lay.margin_left + 4 * lay.cell_w, lay.margin_top + 4 * lay.cell_h)
    assert [label.text for label in lay.col_labels] == ["3", "5", "7", "9"]
    assert [label.text for label in lay.row_labels] == ["10", "20", "30", "40"]
    for label in (*lay.col_labels, *lay.row_labels):
        assert has_ink(first, label.box), label


def test_a_run_killed_half_way_still_yields_the_whole_sheet(
    run_cli: RunCli, tmp_path: Path
) -> None:
    with MockWebui(image_delay=0.1) as server:
        job = tmp_path / "job.yaml"
        spec = {
            "name": "half",
            "prompts": ["a <cat>"],
            "seeds": [7],
            "defaults": {"width": 64, "height": 64},
            "grid": {"steps": STEPS, "cfg_scale": CFGS},
        }
        job.write_text(yaml.safe_dump(spec, sort_keys=False))
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sdbatch", "run", str(job), "--server", server.url]
        proc = subprocess.Popen([*cmd, "--out", str(out)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            not (out / "manifest.jsonl").exists() or len(rows(out)) < 6
        ):
            time.sleep(0.02)
        proc.kill()
        proc.wait(10)
    done = [r for r in rows(out) if r["status"] == "ok"]
    assert 6 <= len(done) < 16
    result = run_cli("sheet", str(out), "--x", "cfg_scale", "--y", "steps")
    assert result.out.strip() == str(out / "sheets" / "cfg_scale-x-steps" / "sheet-all.png")
    image, lay = only(render_sheets(out, x="cfg_scale", y="steps"))
    assert (lay.cols, lay.rows) == (4, 4)  # the planned grid, not only the part that was done
    done_cells = {cell_of(r) for r in done}
    for col in range(4):
        for row in range(4):
            assert is_placeholder(image, lay.slot_box(col, row, 0)) == (
                (col, row) not in done_cells
            )
