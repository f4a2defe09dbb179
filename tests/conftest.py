from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sdbatch.backends.a1111.options import IMAGE_OPTIONS
from sdbatch.cli import main
from sdbatch.run.progress import Console
from sdbatch.standin.a1111 import MockWebui


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


RunCli = Callable[..., CliResult]


def manifest_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of `out`'s manifest, in file order; none while it does not exist."""
    path = out / "manifest.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_tiny_job(
    tmp_path: Path, url: str, prompts: list[Any], seeds: Any, *, name: str, **extra: Any
) -> Path:
    """`tmp_path/job.yaml`: 64x64 images of 2 steps, one retry, a 20 s timeout, and `extra`."""
    job = {
        "name": name,
        "server": {"url": url, "retries": 1, "timeout": 20},
        "defaults": {"steps": 2, "width": 64, "height": 64},
        "prompts": prompts,
        "seeds": seeds,
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.fixture
def run_cli() -> RunCli:
    """Run `sdbatch ARGS...` in-process; fail loudly on an unexpected exit code."""

    def run(*argv: str, expect: int | None = 0) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), Console(out, err, is_tty=False))
        result = CliResult(code, out.getvalue(), err.getvalue())
        if expect is not None:
            assert code == expect, f"exit {code}, expected {expect}\n{result.err}"
        return result

    return run


@pytest.fixture
def webui() -> Iterator[MockWebui]:
    """A fresh stand-in webui on a free loopback port."""
    with MockWebui(seed=1234) as server:
        yield server


ImageOptions = Callable[[str], dict[str, Any]]


@pytest.fixture
def image_options() -> ImageOptions:
    """What a webui holds now of the options that change the image: what preflight pins in
    every payload (read from the server, so a test sees its values, not sdbatch's)."""

    def read(url: str) -> dict[str, Any]:
        options = requests.get(f"{url}/sdapi/v1/options", timeout=5).json()
        return {key: options[key] for key in IMAGE_OPTIONS if key in options}

    return read
