"""`inputs:`: which picture files a job runs through img2img, and the rules that come with it.

Entry point: `resolve_inputs(data, job_path, positions, problems) -> InputsSpec | None`. Only
names are resolved here (files listed, folders globbed, every one a regular file); reading
the pictures themselves is the plan's, which stats them and reads their headers only.

Order, documented in the README: `files:` as written, then the folder's matches sorted by
their path relative to the folder (codepoint order, so the same on every machine); a file
named twice is used once, at its first place.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdbatch.errors import Problem
from sdbatch.job.schema import Positions

DEFAULT_GLOBS = ("*.png", "*.jpg", "*.jpeg", "*.webp")
MAX_BYTES = 50_000_000
MAX_PIXELS = 4096 * 4096

# Fields only img2img has (a1111-img2img-and-extra-networks.md A2), and the hires-fix fields
# only txt2img has: either sent to the other endpoint is dropped without a word.
IMG2IMG_ONLY = (
    "resize_mode",
    "image_cfg_scale",
    "mask_blur",
    "mask_blur_x",
    "mask_blur_y",
    "mask_round",
    "inpainting_fill",
    "inpaint_full_res",
    "inpaint_full_res_padding",
    "inpainting_mask_invert",
    "initial_noise_multiplier",
)
TXT2IMG_PREFIXES = ("enable_hr", "hr_", "firstphase_")


@dataclass(frozen=True)
class InputFile:
    path: Path  # to open: the job file's folder joined with the name
    name: str  # as recorded and shown: relative to the job file's folder, as written
    mask: Path | None = None
    mask_name: str | None = None


@dataclass(frozen=True)
class InputsSpec:
    files: tuple[InputFile, ...]
    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def resolve_inputs(
    data: Mapping[str, Any], job_path: Path, positions: Positions, problems: list[Problem]
) -> InputsSpec | None:
    section = data.get("inputs")
    if not isinstance(section, dict):
        return None  # absent, or a schema problem already
    base = job_path.parent
    shown = Path(positions.file).parent  # messages name files the way the user can open them

    def regular(name: str, path: tuple[Any, ...], what: str) -> Path | None:
        target = base / name
        try:
            mode = target.stat().st_mode
        except OSError:
            problems.append(positions.problem(path, f"no such {what}: {shown / name}"))
            return None
        if not stat.S_ISREG(mode):  # a FIFO or a device would hang or never end
            problems.append(positions.problem(path, f"{shown / name} is not a regular file"))
            return None
        return target

    job_mask = section.get("mask")
    mask_path = regular(job_mask, ("inputs", "mask"), "mask") if isinstance(job_mask, str) else None
    found: dict[str, InputFile] = {}
    for i, entry in enumerate(section.get("files") or ()):
        name = entry if isinstance(entry, str) else _dict(entry).get("file")
        if not isinstance(name, str) or not name:
            continue
        at = ("inputs", "files", i) if isinstance(entry, str) else ("inputs", "files", i, "file")
        path = regular(name, at, "picture")
        own = _dict(entry).get("mask")
        mask = own if isinstance(own, str) else job_mask if mask_path else None
        own_path = mask_path
        if isinstance(own, str):
            own_path = regular(own, ("inputs", "files", i, "mask"), "mask")
        if path is not None and name not in found:
            found[name] = InputFile(path, name, own_path if mask else None, mask)
    folder = section.get("dir")
    if isinstance(folder, str) and folder:
        globs = section.get("glob", DEFAULT_GLOBS)
        globs = (globs,) if isinstance(globs, str) else tuple(globs)
        for name in _matches(base, folder, globs, positions, problems, shown):
            if name not in found:
                mask = job_mask if mask_path else None
                found[name] = InputFile(base / name, name, mask_path, mask)
    if not found and not problems:
        problems.append(positions.problem(("inputs",), "inputs: names no picture"))
    return InputsSpec(
        tuple(found.values()),
        int(section.get("max_bytes", MAX_BYTES)),
        int(section.get("max_pixels", MAX_PIXELS)),
    )


def _matches(
    base: Path,
    folder: str,
    globs: tuple[str, ...],
    positions: Positions,
    problems: list[Problem],
    shown: Path,
) -> list[str]:
    """The folder's regular files matching any glob, as names relative to the job's folder,
    sorted by their path within the folder. Case-blind, since cameras write .JPG."""
    root = base / folder
    if not root.is_dir():
        problems.append(positions.problem(("inputs", "dir"), f"no such folder: {shown / folder}"))
        return []
    hits: set[str] = set()
    inside = root.resolve()
    for pattern in globs:
        try:
            paths = list(root.glob(_caseless(pattern)))
        except (ValueError, NotImplementedError) as exc:  # "/abs/*", "": not a folder pattern
            problems.append(positions.problem(("inputs", "glob"), f"bad glob {pattern!r}: {exc}"))
            continue
        for path in paths:
            # Regular files inside the folder only: not by a symlink or a "../" pattern.
            if path.is_symlink() or not path.is_file():
                continue
            if not path.resolve().is_relative_to(inside):
                continue
            hits.add(path.relative_to(root).as_posix())
    if not hits and not problems:
        patterns = ", ".join(globs)
        message = f"no picture in {shown / folder} matches {patterns}"
        problems.append(positions.problem(("inputs", "dir"), message))
    return [(Path(folder) / rel).as_posix() for rel in sorted(hits)]


def _caseless(pattern: str) -> str:
    """`*.png` -> `*.[pP][nN][gG]`: glob is case-blind only from Python 3.12 on."""
    out, depth = [], 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        out.append(f"[{char.lower()}{char.upper()}]" if char.isalpha() and not depth else char)
    return "".join(out)


def input_rules(data: Mapping[str, Any], positions: Positions) -> Iterator[Problem]:
    """A field for the other endpoint would be dropped by the webui without a word."""
    inputs = isinstance(data.get("inputs"), dict)
    items = data.get("prompts")
    layers: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = [
        (("defaults",), _dict(data.get("defaults"))),
        (("grid",), _dict(data.get("grid"))),
        (("zip",), _dict(data.get("zip"))),
    ]
    for i, prompt in enumerate(items if isinstance(items, list) else ()):
        layers.append((("prompts", i), _dict(prompt)))
    for where, layer in layers:
        for key in layer:
            if not inputs and key in IMG2IMG_ONLY:
                message = f"{key!r} is an img2img field; it needs inputs: (pictures to start from)"
            elif inputs and key.startswith(TXT2IMG_PREFIXES):
                message = f"{key!r} is a txt2img hires-fix field; img2img (inputs:) has none"
            else:
                continue
            yield positions.problem((*where, key), message, key=True)
