"""The prompts of a job: `prompts:` then the lines of `prompts_file:`.

Entry point: `read_prompts(data, job_path, positions, problems, limits) -> (specs, sources)`.
The file is read as bytes, bounded by `limits.max_prompts_file_bytes`, and only when it is a
regular file (`safeload.read_regular`); it is split on newlines only (`lines_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdbatch.errors import Problem
from sdbatch.job.limits import Limits
from sdbatch.job.safeload import ReadError, read_regular
from sdbatch.job.schema import Positions
from sdbatch.job.sweeprules import PromptSource


@dataclass(frozen=True)
class PromptSpec:
    """One entry of `prompts:` (or one line of `prompts_file:`)."""

    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # per-prompt txt2img fields
    origin: str = ""  # where it came from, for messages: "jobs/x.yaml:7" or "more.txt:3"


def read_prompts(
    data: Mapping[str, Any],
    job_path: Path,
    positions: Positions,
    problems: list[Problem],
    limits: Limits,
) -> tuple[list[PromptSpec], list[PromptSource]]:
    """`prompts:` then the lines of `prompts_file:`, and where each came from (for template
    problems); reading problems go to `problems`."""
    specs: list[PromptSpec] = []
    sources: list[PromptSource] = []
    items = data.get("prompts")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        mapping = item if isinstance(item, dict) else {}
        text = item if isinstance(item, str) else mapping.get("prompt")
        if not isinstance(text, str):
            continue  # a schema problem already
        fields = {k: v for k, v in mapping.items() if k != "prompt"}
        line = positions.line_col(("prompts", i))[0]
        specs.append(PromptSpec(text, fields, f"{positions.file}:{line}"))
        path = ("prompts", i, "prompt") if isinstance(item, dict) else ("prompts", i)
        sources.append(PromptSource(text, fields, path=path))
    prompts_file = data.get("prompts_file")
    if isinstance(prompts_file, str) and prompts_file:
        # Relative to the job file, spelled from the user's own path so messages can be opened.
        shown = Path(positions.file).parent / prompts_file
        where = job_path.parent / prompts_file
        try:
            lines = lines_of(read_regular(where, limits.max_prompts_file_bytes, "prompts_file"))
        except FileNotFoundError:
            problems.append(positions.problem(("prompts_file",), f"no such file: {shown}"))
            return specs, sources
        except ReadError as exc:
            message = str(exc).replace(str(where), str(shown), 1)
            if "over the limit" in message:
                message += " (limits.max_prompts_file_bytes)"
            problems.append(positions.problem(("prompts_file",), message))
            return specs, sources
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
            problems.append(positions.problem(("prompts_file",), f"cannot read {shown}: {reason}"))
            return specs, sources
        wanted = sum(1 for raw in lines if raw.strip() and not raw.strip().startswith("#"))
        if wanted > limits.max_images:  # each is an image at least; don't build them all
            message = f"{shown} has {wanted:,} prompts, over limits.max_images"
            problems.append(positions.problem(("prompts_file",), message))
            return specs, sources
        for n, raw in enumerate(lines, start=1):
            text = raw.strip()
            if text and not text.startswith("#"):
                specs.append(PromptSpec(text, {}, f"{shown}:{n}"))
                column = len(raw) - len(raw.lstrip()) + 1
                sources.append(PromptSource(text, {}, line=(str(shown), n, column)))
    return specs, sources


def lines_of(data: bytes) -> list[str]:
    """A prompts file's lines: split on \\n (and \\r\\n) only, where str.splitlines would also
    split on U+2028, NEL, VT, FF and more (the prompt rules refuse those instead); a leading
    UTF-8 BOM, which Windows editors write, is no part of the first line."""
    text = data.decode("utf-8-sig")
    return [line.removesuffix("\r") for line in text.split("\n")]
