"""Hostile job files, by class: each is refused before any work with its `file:line:col`, exit 2,
no traceback, within a bounded time and memory, and with nothing sent to the webui or written.

`refused()` runs `sdbatch run` in-process against the stand-in, in a thread joined with a
timeout (a hang fails the test instead of blocking it). The cases that would hang a process for
good (a FIFO) or eat its memory run `python -m sdbatch` as a child with a timeout and an address
space limit, so a regression kills the child, not the test run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, RunCli

from sdbatch.job import limits as joblimits
from sdbatch.job.schema import load_schema
from sdbatch.standin.a1111 import MockWebui

ROOT = Path(__file__).resolve().parents[2]
HANG = 60  # seconds: far above what any case takes, far below "until killed"
MEMORY = 1_500_000_000  # bytes of address space for a child: the bombs want many GB


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def job_text(**fields: Any) -> str:
    return yaml.safe_dump({"name": "t", "prompts": ["a cat"], **fields}, sort_keys=False)


def bounded(run_cli: RunCli, *argv: str, expect: int | None = None) -> CliResult:
    """`run_cli(*argv)` in a thread: fails when it has not returned after HANG seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run_cli(*argv, expect=expect)
        except BaseException as exc:  # a traceback the user would see
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"sdbatch {' '.join(argv)} still running after {HANG}s"
    assert "error" not in box, f"uncaught {box.get('error')!r}"
    result: CliResult = box["result"]
    return result


def refused(
    run_cli: RunCli, webui: MockWebui, job: Path, tmp_path: Path, *needles: str
) -> CliResult:
    """`sdbatch run JOB`: exit 2 with every needle in one `JOB:line:col:` line, nothing sent,
    no output dir, no traceback."""
    out = tmp_path / "out"
    result = bounded(run_cli, "run", str(job), "--server", webui.url, "--out", str(out))
    assert result.code == 2, result.err
    assert "Traceback" not in result.err + result.out
    lines = [line for line in result.err.splitlines() if all(n in line for n in needles)]
    assert lines, result.err
    assert re.match(r"^[^:]+:\d+:\d+: \$", lines[0]), lines[0]  # file:line:col: $.path
    assert webui.requests == []
    assert not out.exists()
    return result


# The child caps its own address space before it imports sdbatch (no preexec_fn: forking a
# process that runs threads is unsafe, and newer Pythons warn about it).
CAPPED = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2); "
    "sys.argv = ['sdbatch', *sys.argv[2:]]; "
    "runpy.run_module('sdbatch', run_name='__main__')"
)


def child(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m sdbatch ARGV` with HANG seconds and MEMORY bytes at most."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CAPPED, str(MEMORY), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG,
        env=env,
        check=False,
    )


# --- YAML alias bombs -------------------------------------------------------------------------

LAUGHS = "".join(
    f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = f'prompts: [a cat]\nextra_fields:\n  a: &a ["lol", "lol", "lol", "lol", "lol"]\n{LAUGHS}'


class TestAliasBomb:
    def test_billion_laughs_is_refused_where_it_grows(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = write(tmp_path, BOMB)
        assert job.stat().st_size < 1000  # a few hundred bytes standing for 10^9 strings
        refused(run_cli, webui, job, tmp_path, "100,000 values", "alias bomb")

    def test_billion_laughs_in_a_memory_capped_child(self, tmp_path: Path) -> None:
        job = write(tmp_path, BOMB)
        proc = child("plan", str(job), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "alias bomb" in proc.stderr and "Traceback" not in proc.stderr

    def test_an_alias_inside_its_own_anchor(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = write(tmp_path, "prompts: [a cat]\nextra_fields:\n  loop: &x [1, *x]\n")
        refused(run_cli, webui, job, tmp_path, ":3:16:", "*x refers to a value that contains it")

    def test_merge_keys_count_in_full(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        text = "prompts: [a cat]\nextra_fields:\n  a: &a {x: [lol, lol, lol, lol, lol, lol]}\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
            text += f"  {name}: &{name} {{{', '.join(f'k{i}: *{prev}' for i in range(9))}}}\n"
        refused(run_cli, webui, write(tmp_path, text), tmp_path, "alias bomb")

    def test_aliases_of_ordinary_size_still_work(self, run_cli: RunCli, tmp_path: Path) -> None:
        # 9 x 9 x 9 values: a big but honest use of aliases passes; three levels more do not
        def levels(names: str) -> str:
            return "".join(
                f"  {n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in pairwise(names)
            )

        text = "prompts: [a cat]\nextra_fields:\n  a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
        text += levels("abc")
        assert bounded(run_cli, "validate", str(write(tmp_path, text))).code == 0
        text += levels("cdef")
        result = bounded(run_cli, "validate", str(write(tmp_path, text)))
        assert result.code == 2 and "alias bomb" in result.err


# --- sizes: job file, prompts, nesting, numbers ---------------------------------------------


class TestSizes:
    def test_a_job_file_over_one_mib(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = write(tmp_path, job_text(prompts=["x" * 2_000_000]))
        result = bounded(run_cli, "run", str(job), "--server", webui.url)
        assert result.code == 2 and "over the limit of 1,048,576 bytes" in result.err
        assert "Traceback" not in result.err and webui.requests == []

    def test_more_values_than_a_job_file_may_hold(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = write(tmp_path, "prompts:\n" + "- p\n" * 100_001)  # the 100,001st value: line 99999
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2 and f"{job}:99999:3: $: the document holds more" in result.err
        assert "long lists of prompts belong in prompts_file:" in result.err

    def test_a_prompt_over_max_prompt_bytes(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = write(tmp_path, job_text(prompts=["ok", "y" * 70_000]))
        refused(run_cli, webui, job, tmp_path, ":3:", "70,000 bytes", "max_prompt_bytes (65,536)")

    def test_a_prompts_file_line_over_max_prompt_bytes(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        (tmp_path / "p.txt").write_text("short\n" + "z" * 100 + "\n")
        job = write(tmp_path, job_text(prompts_file="p.txt", limits={"max_prompt_bytes": 50}))
        result = refused(run_cli, webui, job, tmp_path, "max_prompt_bytes (50)")
        assert f"{tmp_path / 'p.txt'}:2:1:" in result.err

    def test_a_50_mb_prompts_file(self, run_cli: RunCli, webui: MockWebui, tmp_path: Path) -> None:
        with (tmp_path / "big.txt").open("wb") as big:
            big.truncate(50_000_000)  # sparse: no 50 MB written to the disk
        job = write(tmp_path, job_text(prompts_file="big.txt"))
        refused(run_cli, webui, job, tmp_path, "over the limit of 4,194,304 bytes")

    def test_max_prompts_file_bytes_is_a_setting(self, run_cli: RunCli, tmp_path: Path) -> None:
        (tmp_path / "p.txt").write_text("a dog\n" * 20)
        small = write(
            tmp_path, job_text(prompts_file="p.txt", limits={"max_prompts_file_bytes": 50})
        )
        result = bounded(run_cli, "validate", str(small))
        assert result.code == 2
        assert (
            "over the limit of 50 bytes for a prompts_file (limits.max_prompts_file_bytes)"
            in result.err
        )
        (tmp_path / "job.yaml").write_text(job_text(prompts_file="p.txt"))
        assert bounded(run_cli, "validate", str(small)).code == 0

    def test_deep_nesting(self, run_cli: RunCli, webui: MockWebui, tmp_path: Path) -> None:
        job = write(tmp_path, f"prompts: [a cat]\nextra_fields:\n  x: {'[' * 5000}1{']' * 5000}\n")
        refused(run_cli, webui, job, tmp_path, ":3:", "nest more than 64 levels")

    def test_deep_block_nesting(self, run_cli: RunCli, webui: MockWebui, tmp_path: Path) -> None:
        text = "prompts: [a cat]\nextra_fields:\n" + "".join(
            f"{'  ' * (i + 1)}k{i}:\n" for i in range(200)
        )
        refused(run_cli, webui, write(tmp_path, text + "  " * 201 + "1\n"), tmp_path, "64 levels")

    def test_a_5000_digit_number(self, run_cli: RunCli, webui: MockWebui, tmp_path: Path) -> None:
        job = write(tmp_path, f"prompts: [a cat]\ndefaults:\n  steps: {'9' * 5000}\n")
        refused(run_cli, webui, job, tmp_path, ":3:10:", "more than 100 characters")


# --- special files ----------------------------------------------------------------------------


class TestSpecialFiles:
    @pytest.mark.parametrize(
        ("target", "kind"), [("/dev/zero", "character device"), (".", "directory")]
    )
    def test_prompts_file_that_is_no_regular_file(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, target: str, kind: str
    ) -> None:
        job = write(tmp_path, job_text(prompts_file=target))
        refused(run_cli, webui, job, tmp_path, ":4:15:", f"is not a regular file (a {kind})")

    def test_prompts_file_that_is_a_fifo_does_not_hang(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "p.fifo")  # nobody ever writes to it: open() or read() would block
        job = write(tmp_path, job_text(prompts_file="p.fifo"))
        proc = child("validate", str(job), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "p.fifo is not a regular file (a FIFO)" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_a_job_file_that_is_a_fifo_does_not_hang(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "job.yaml")
        proc = child("plan", str(tmp_path / "job.yaml"), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "job.yaml: is not a regular file (a FIFO)" in proc.stderr

    def test_a_job_file_that_is_a_directory_or_a_device(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        for path, kind in ((tmp_path, "directory"), (Path("/dev/zero"), "character device")):
            result = bounded(run_cli, "validate", str(path))
            assert result.code == 2 and f"not a regular file (a {kind})" in result.err
            assert "Traceback" not in result.err


# --- counts: seeds, cells, images -------------------------------------------------------------


class TestCounts:
    def test_a_billion_seeds_in_a_memory_capped_child(self, tmp_path: Path) -> None:
        job = write(tmp_path, job_text(seeds={"count": 1_000_000_000}))
        proc = child("plan", str(job), "--limit", "1", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "1,000,000,000 images, over limits.max_images (1,000,000)" in proc.stderr

    def test_a_grid_of_10_to_the_12_cells(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        axes = {"steps": "1-100", "width": "64-8000 (+8)", "cfg_scale": "1-10 [100]"}
        axes |= {"seed_resize_from_h": "1-1000", "seed_resize_from_w": "1-1000"}
        refused(
            run_cli, webui, write(tmp_path, job_text(grid=axes)), tmp_path, "over limits.max_images"
        )

    def test_a_range_of_a_million_values(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = write(tmp_path, job_text(grid={"steps": {"range": [1, 1_000_000, 1]}}))
        refused(run_cli, webui, job, tmp_path, "1,000,000 values, more than the 10,000")

    @pytest.mark.parametrize(("field", "value"), [("batch_size", 100_000_000), ("n_iter", 10**7)])
    def test_images_per_payload(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, field: str, value: int
    ) -> None:
        job = write(tmp_path, job_text(defaults={field: value}))
        refused(run_cli, webui, job, tmp_path, f"{field} {value} is over")

    def test_a_batch_size_axis_counts_its_images(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        job = job_text(grid={"batch_size": [100, 99]}, seeds={"count": 6000})
        refused(run_cli, webui, write(tmp_path, job), tmp_path, "1,194,000 images")

    def test_variants_multiply(self, run_cli: RunCli, webui: MockWebui, tmp_path: Path) -> None:
        job = write(tmp_path, job_text(prompts=["x" + "{a|b}" * 30]))
        refused(run_cli, webui, job, tmp_path, f"{2**30:,} images")

    def test_max_images_is_a_setting(self, run_cli: RunCli, tmp_path: Path) -> None:
        grid = {"steps": "1-50", "cfg_scale": "1-10 [50]"}  # 2500 cells
        low = write(tmp_path, job_text(grid=grid, limits={"max_images": 2000}))
        result = bounded(run_cli, "validate", str(low))
        assert result.code == 2
        assert (
            f"{low}:" in result.err and "2,500 images, over limits.max_images (2,000)" in result.err
        )
        write(tmp_path, job_text(grid=grid, limits={"max_images": 3000}))
        assert bounded(run_cli, "plan", str(low), "--limit", "1").out.startswith("2500 payloads")

    def test_the_limit_counts_what_the_plan_counts(self, run_cli: RunCli, tmp_path: Path) -> None:
        job: dict[str, Any] = {
            "vars": {"animal": ["cat", "dog", "cow"]},
            "prompts": ["a {animal}", {"prompt": "a {red|blue|green} car", "n_iter": 2}, "x"],
            "grid": {"batch_size": [1, 2], "steps": [10, 20]},
            "zip": {"width": [512, 768], "height": [768, 512]},
            "defaults": {"negative_prompt": "{ugly|bad}"},
            "seeds": {"count": 3},
        }
        path = write(tmp_path, job_text(**job))
        header = bounded(run_cli, "plan", str(path), "--limit", "0", expect=0).out
        images = int(header.split(" payloads, ")[1].split(" images")[0])
        # by hand: batch_size weighs 1 + 2, steps 2, zip 2, seeds 3; per prompt (x 2 for the
        # negative prompt's variants): 3 animals, 3 colours x n_iter 2, and 1
        assert images == 3 * 2 * 2 * 3 * (3 * 2 + 3 * 2 * 2 + 1 * 2)
        write(tmp_path, job_text(**job, limits={"max_images": images}))
        assert bounded(run_cli, "validate", str(path)).code == 0
        write(tmp_path, job_text(**job, limits={"max_images": images - 1}))
        result = bounded(run_cli, "validate", str(path))
        assert result.code == 2 and f"plans {images:,} images" in result.err

    def test_an_exact_count_at_the_limit_passes(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = job_text(grid={"batch_size": [1, 3]}, seeds={"count": 5}, limits={"max_images": 20})
        result = bounded(run_cli, "plan", str(write(tmp_path, job)), expect=0)
        assert result.out.startswith("10 payloads, 20 images")


# --- values a schema type lets through ---------------------------------------------------------


class TestValues:
    @pytest.mark.parametrize(
        ("defaults", "needle"),
        [
            ({"steps": 100000}, "steps 100000 is over 500"),
            ({"width": 100000}, "width 100000 is over 16384"),
            ({"cfg_scale": -3}, "-3 is less than the minimum of 0"),
            ({"cfg_scale": 500}, "cfg_scale is 0 to 100"),
            ({"subseed_strength": 2}, "subseed_strength is between 0 and 1"),
            ({"subseed": 2**32}, "subseed is -1 (random) or 0 to 4294967294"),
        ],
    )
    def test_nonsense_numbers(
        self,
        run_cli: RunCli,
        webui: MockWebui,
        tmp_path: Path,
        defaults: dict[str, int],
        needle: str,
    ) -> None:
        job = write(tmp_path, job_text(defaults=defaults))
        refused(run_cli, webui, job, tmp_path, f"$.defaults.{next(iter(defaults))}", needle)

    def test_every_nonsense_number_at_once(self, run_cli: RunCli, tmp_path: Path) -> None:
        defaults = {"steps": 0, "width": 0, "height": -64, "cfg_scale": -3, "eta": -1}
        job = write(tmp_path, job_text(defaults=defaults, grid={"steps": [20, 0, 999]}))
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2
        found = {line.split(": ")[1] for line in result.err.splitlines()[1:]}
        assert found == {
            *(f"$.defaults.{name}" for name in defaults),
            "$.grid.steps[1]",
            "$.grid.steps[2]",
        }

    @pytest.mark.parametrize(
        ("text", "where"),
        [
            ("defaults:\n  cfg_scale: .nan\n", ":4:14: $.defaults.cfg_scale: nan"),
            ("defaults:\n  eta: .inf\n", ":4:8: $.defaults.eta: inf"),
            ("defaults:\n  s_noise: 1.0e+309\n", ":4:12: $.defaults.s_noise: inf"),
            ("extra_fields:\n  my_ext: {weight: -.inf}\n", "$.extra_fields.my_ext.weight: -inf"),
            ("grid:\n  cfg_scale: [5, .nan]\n", "$.grid.cfg_scale[1]: nan"),
            ("grid:\n  cfg_scale: {range: [1, .inf, 1]}\n", "$.grid.cfg_scale.range[1]: inf"),
            ("grid:\n  cfg_scale: {linspace: [.nan, 2, 3]}\n", "$.grid.cfg_scale.linspace[0]: nan"),
        ],
    )
    def test_numbers_that_are_not_finite(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, text: str, where: str
    ) -> None:
        job = write(tmp_path, "name: t\nprompts: [a cat]\n" + text)
        refused(run_cli, webui, job, tmp_path, where, "is not a finite number")

    @pytest.mark.parametrize(
        ("seeds", "needle"),
        [
            ([1, 4294967295], "$.seeds[1]: seed 4294967295 is past 4294967294"),
            ({"start": 4294967290, "count": 10}, "seeds 4294967290..4294967299 go past"),
            ({"count": 5, "random_seed": 2**70}, "$.seeds.random_seed"),
        ],
    )
    def test_seeds_beyond_the_webui_range(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, seeds: Any, needle: str
    ) -> None:
        refused(run_cli, webui, write(tmp_path, job_text(seeds=seeds)), tmp_path, needle)

    def test_the_largest_seeds_still_pass(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = write(tmp_path, job_text(seeds={"start": 4294967290, "count": 5}))
        assert "4294967294" in bounded(run_cli, "plan", str(job), expect=0).out
        write(tmp_path, job_text(seeds={"start": 4294967290, "count": 6}))
        assert bounded(run_cli, "plan", str(job)).code == 2


# --- unicode in prompts -----------------------------------------------------------------------


class TestUnicode:
    def test_a_bom_does_not_turn_a_comment_into_a_prompt(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        (tmp_path / "p.txt").write_bytes("\ufeff# my prompts\r\na dog\r\na cow\r\n".encode())
        job = write(tmp_path, job_text(prompts_file="p.txt"))
        result = bounded(run_cli, "plan", str(job), "--json", expect=0)
        prompts = [json.loads(line)["prompt"] for line in result.out.splitlines()]
        assert prompts == ["a cat", "a dog", "a cow"]

    @pytest.mark.parametrize(
        ("char", "name"),
        [
            ("\u2028", "U+2028 (LINE SEPARATOR)"),
            ("\u2029", "U+2029 (PARAGRAPH SEPARATOR)"),
            ("\x85", "U+0085"),
            ("\x0b", "U+000B"),
            ("\x0c", "U+000C"),
            ("\r", "U+000D"),
            ("\x1e", "U+001E"),
        ],
    )
    def test_a_line_break_python_sees_and_the_user_does_not(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, char: str, name: str
    ) -> None:
        (tmp_path / "p.txt").write_text(f"a dog\na red{char}cow\n", encoding="utf-8", newline="")
        job = write(tmp_path, job_text(prompts_file="p.txt"))
        result = refused(run_cli, webui, job, tmp_path, name)
        assert f"{tmp_path / 'p.txt'}:2:6: $.prompts_file: {name}" in result.err

    def test_an_escaped_separator_in_a_yaml_prompt(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        # Tabs and the newlines of a block scalar are ordinary prompt text; U+2028 is not.
        text = 'prompts:\n  - "a\\tcat"\n  - |\n    two\n    lines\n  - "a red\\u2028cow"\n'
        result = refused(
            run_cli, webui, write(tmp_path, text), tmp_path, ":6:5: $.prompts[2]: U+2028"
        )
        assert len(result.err.splitlines()) == 2  # the header and this one problem


# --- server.url and the server section --------------------------------------------------------


class TestServer:
    @pytest.mark.parametrize(
        ("server", "needle"),
        [
            ({"url": "http://127.0.0.1:99999"}, "$.server.url: the port is out of range"),
            ({"url": "http://127.0.0.1:0"}, "$.server.url: port 0"),
            ({"urls": ["http://a:1", "http://b:70000"]}, "$.server.urls[1]: the port is out"),
            ({"url": "ftp://127.0.0.1/"}, "server.url must look like http(s)://"),
            ({"url": "file:///etc/passwd"}, "server.url must look like http(s)://"),
            ({"concurrency": 100000}, "concurrency is 1 to 32"),
            ({"retries": 10**6}, "retries is 0 to 100"),
            ({"timeout": 10**9}, "timeout is at most 86400 seconds"),
            ({"headers": {"X-Token": "a\r\nHost: evil"}}, "cannot hold a line break"),
        ],
    )
    def test_server_settings(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, server: Any, needle: str
    ) -> None:
        refused(run_cli, webui, write(tmp_path, job_text(server=server)), tmp_path, needle)

    def test_validate_says_so_too(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = write(tmp_path, job_text(server={"url": "http://127.0.0.1:99999"}))
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2 and f"{job}:5:8: $.server.url: the port" in result.err

    def test_a_password_in_a_bad_url_is_not_echoed(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path
    ) -> None:
        for url in ("ftp://user:hunter2@host/", "http://user:hunter2@host:99999/"):
            job = write(tmp_path, job_text(server={"url": url}))
            result = refused(run_cli, webui, job, tmp_path, "$.server.url")
            assert "hunter2" not in result.err + result.out


# --- the job's name -----------------------------------------------------------------------------


class TestNames:
    # "..", "." and names with "/" or "\\" were refused before (tests/data/jobs/invalid).
    @pytest.mark.parametrize("name", ["a\x00b", "tab\there", "del\x7f", "x" * 101])
    def test_an_unsafe_name_field(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, name: str
    ) -> None:
        job = write(tmp_path, json.dumps({"name": name, "prompts": ["a cat"]}))
        refused(run_cli, webui, job, tmp_path, ":1:10: $.name: name")

    def test_a_name_from_the_file_name(
        self, run_cli: RunCli, webui: MockWebui, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        job = write(tmp_path, "prompts: [a cat]\noutput: {dir: 'renders/{name}'}\n", "...yaml")
        result = bounded(run_cli, "run", str(job), "--server", webui.url)
        assert result.code == 2, result.err
        assert f"{job}:1:1: $: the job is named after its file, '..'" in result.err
        assert "add a name: line" in result.err
        assert list(cwd.iterdir()) == [] and webui.requests == []
        job.rename(tmp_path / "my.cats.yaml")  # a name with dots, but one safe component
        assert bounded(run_cli, "validate", str(tmp_path / "my.cats.yaml")).code == 0


# --- YAML messages for new users --------------------------------------------------------------


class TestYamlMessages:
    def test_a_tab_in_the_indentation(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = write(tmp_path, "prompts:\n  - a cat\ndefaults:\n \tsteps: 20\n")
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2
        assert f"{job}:4:2: $: invalid YAML:" in result.err
        assert "YAML indents with spaces, not tabs; use spaces" in result.err

    def test_an_unquoted_prompt_with_a_colon(self, run_cli: RunCli, tmp_path: Path) -> None:
        job = write(tmp_path, "prompts:\n  - a cat\n  - portrait: a dog, studio light\n")
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2
        assert f"{job}:3:5: $.prompts[1]: YAML read this prompt as a mapping" in result.err
        assert "put this prompt in quotes" in result.err
        assert "extra_fields" not in result.err and "required" not in result.err
        assert len(result.err.splitlines()) == 2  # the header and this one problem

    def test_a_prompt_mapping_with_a_typo_is_still_a_typo(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        text = "prompts:\n  - {prompt: a cat, stesp: 20}\n  - a dog: in the rain\n"
        result = bounded(run_cli, "validate", str(write(tmp_path, text)))
        first, second = result.err.splitlines()[1:]
        assert ":2:" in first and "did you mean 'steps'" in first and "quotes" not in first
        assert ":3:" in second and "put this prompt in quotes" in second

    def test_an_unclosed_quote_is_reported_where_it_opens(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        job = write(tmp_path, 'prompts:\n  - a cat\n  - "a dog\n  - a cow\ndefaults:\n  steps: 2\n')
        result = bounded(run_cli, "validate", str(job))
        assert result.code == 2
        assert f"{job}:3:5: $: invalid YAML: this quoted string is never closed" in result.err


# --- the schema -------------------------------------------------------------------------------


def properties(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """Every property schema (under `properties` or `$defs`), with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    found.append((f"{path}/{key}/{name}", sub))
                    found += properties(sub, f"{path}/{key}/{name}")
            else:
                found += properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += properties(value, f"{path}/{i}")
    return found


class TestSchema:
    def test_every_property_has_a_title_and_a_description(self) -> None:
        schema = load_schema()
        assert schema["$id"] and schema["title"] and schema["description"]
        missing = [
            p for p, s in properties(schema) if not (s.get("title") and s.get("description"))
        ]
        assert missing == []

    def test_numeric_fields_are_bounded(self) -> None:
        fields = load_schema()["$defs"]["txt2img"]["properties"]
        for name in ("steps", "width", "height", "batch_size", "n_iter", "cfg_scale"):
            assert "minimum" in fields[name] and "maximum" in fields[name], name

    def test_limits_defaults_are_the_schemas(self) -> None:
        section = load_schema()["properties"]["limits"]["properties"]
        defaults = joblimits.Limits()
        assert {k: v["default"] for k, v in section.items()} == {
            k: getattr(defaults, k) for k in section
        }

    def test_schema_prints_the_packaged_schema(self, run_cli: RunCli) -> None:
        result = bounded(run_cli, "schema", expect=0)
        assert json.loads(result.out) == load_schema()
        assert result.out == (ROOT / "schemas" / "job.schema.json").read_text(encoding="utf-8")

    def test_schema_write_next_to_a_job_or_into_a_folder(
        self, run_cli: RunCli, tmp_path: Path
    ) -> None:
        (tmp_path / "a").mkdir()
        job = write(tmp_path / "a", job_text())
        result = bounded(run_cli, "schema", "--write", str(job), expect=0)
        assert result.out.strip() == str(tmp_path / "a" / "job.schema.json")
        assert json.loads((tmp_path / "a" / "job.schema.json").read_text()) == load_schema()
        (tmp_path / "b").mkdir()
        bounded(run_cli, "schema", "--write", str(tmp_path / "b"), expect=0)
        assert json.loads((tmp_path / "b" / "job.schema.json").read_text()) == load_schema()
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["job.schema.json"]

    def test_schema_write_to_nowhere(self, run_cli: RunCli, tmp_path: Path) -> None:
        result = bounded(run_cli, "schema", "--write", str(tmp_path / "nope"))
        assert result.code == 2 and "no such folder or job file" in result.err

    def test_shipped_jobs_name_a_schema_next_to_them(self) -> None:
        for job in sorted((ROOT / "jobs").glob("*.yaml")):
            first = job.read_text(encoding="utf-8").splitlines()[0]
            assert first == "# yaml-language-server: $schema=job.schema.json", job.name
        # jobs/job.schema.json is what `sdbatch schema --write jobs` writes: it must not go stale
        shipped = (ROOT / "jobs" / "job.schema.json").read_text(encoding="utf-8")
        assert shipped == (ROOT / "schemas" / "job.schema.json").read_text(encoding="utf-8")
