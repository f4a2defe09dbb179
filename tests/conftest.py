from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

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
