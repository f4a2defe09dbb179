"""`inputs:` in the loader: which files, in what order, and the mistakes caught at file:line:col."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from sdbatch.errors import JobValidationError
from sdbatch.job.loader import load_job


def picture(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16)).save(path)
    return path


def problems(job: Path) -> str:
    with pytest.raises(JobValidationError) as info:
        load_job(job)
    return str(info.value)


def test_files_then_the_folder_sorted_each_once_and_masks_paired(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "sub/c.webp", "z.JPEG"):
        picture(tmp_path / "pics" / name)
    picture(tmp_path / "m.png")
    picture(tmp_path / "own.png")
    job = tmp_path / "job.yaml"
    job.write_text(
        "inputs:\n  files: [pics/b.png, {file: pics/a.jpg, mask: own.png}]\n"
        "  dir: pics\n  glob: ['*.png', '*.jpg', '*.jpeg', '**/*.webp']\n  mask: m.png\n"
        "prompts: ['{input}']\n",
        encoding="utf-8",
    )
    inputs = load_job(job).inputs
    assert inputs is not None
    assert [(f.name, f.mask_name) for f in inputs.files] == [
        ("pics/b.png", "m.png"),
        ("pics/a.jpg", "own.png"),
        ("pics/sub/c.webp", "m.png"),
        ("pics/z.JPEG", "m.png"),
    ]


def test_the_default_glob_is_case_blind_and_skips_other_files(tmp_path: Path) -> None:
    picture(tmp_path / "pics" / "IMG_1.JPG")
    picture(tmp_path / "pics" / "b.png")
    (tmp_path / "pics" / "readme.md").write_text("hi", encoding="utf-8")
    job = tmp_path / "job.yaml"
    job.write_text("inputs: {dir: pics}\nprompts: [a cat]\n", encoding="utf-8")
    inputs = load_job(job).inputs
    assert inputs is not None and [f.name for f in inputs.files] == ["pics/IMG_1.JPG", "pics/b.png"]


def test_symlinks_and_parent_patterns_stay_inside_the_folder(tmp_path: Path) -> None:
    picture(tmp_path / "outside.png")
    picture(tmp_path / "pics" / "in.png")
    os.symlink(tmp_path / "outside.png", tmp_path / "pics" / "link.png")
    job = tmp_path / "job.yaml"
    job.write_text("inputs: {dir: pics, glob: ['*.png', '../*.png']}\nprompts: [a]\n", "utf-8")
    inputs = load_job(job).inputs
    assert inputs is not None and [f.name for f in inputs.files] == ["pics/in.png"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inputs: {dir: nowhere}\nprompts: [a]\n", "1:15: ... no such folder"),
        ("inputs: {dir: empty}\nprompts: [a]\n", "no picture in"),
        ("inputs: {files: [gone.png]}\nprompts: [a]\n", "no such picture: "),
        ("inputs: {files: [empty]}\nprompts: [a]\n", "is not a regular file"),
        ("prompts: [a]\ndefaults: {resize_mode: 1}\n", "'resize_mode' is an img2img field"),
        ("prompts: ['a {input}']\n", "unknown variable {input}"),
        (
            "inputs: {dir: empty2}\nprompts: [a]\ndefaults: {enable_hr: true}\n",
            "'enable_hr' is a txt2img hires-fix field",
        ),
        ("inputs: {dir: empty2}\nprompts: ['{input}']\nvars: {input: [a, b]}\n", "plan field name"),
    ],
)
def test_input_mistakes_are_reported_in_place(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "empty").mkdir()
    picture(tmp_path / "empty2" / "x.png")
    job = tmp_path / "job.yaml"
    job.write_text(text, encoding="utf-8")
    found = problems(job)
    position, _, message = expected.partition(": ... ")
    if message:
        assert f"{job}:{position}: $.inputs.dir: {message}" in found
    else:
        assert expected in found, found
