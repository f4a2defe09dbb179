"""What a run says at its end: the tally (`RunResult`), and where to look and what to run next.

Entry point: `closing_lines(result, pictures, command) -> [(kind, line)]`, printed by the runner
after summary.json is written: the tally, the gallery as a file:// link, the sheets, manifest and
summary; after a failed, stopped or partial run, that the same command resumes, and that command
(`resume_command`, from the command line as typed).
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdbatch.errors import ExitCode, SdbatchError
from sdbatch.output.manifest import MANIFEST
from sdbatch.output.writer import SUMMARY


def signal_name(signum: int) -> str:
    """How a person calls the signal: Ctrl-C for SIGINT."""
    name = signal.Signals(signum).name
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else name


@dataclass
class RunResult:
    out_dir: Path
    planned_images: int  # the whole plan, including what an earlier run finished
    skipped: int = 0  # images an earlier run finished
    saved: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # one row per failed payload
    elapsed: float = 0.0
    server_version: str | None = None
    server_versions: dict[str, str] = field(default_factory=dict)  # several servers, each's
    signal: int | None = None  # the signal that stopped the run early
    error: SdbatchError | None = None  # what aborted the run
    mismatched: list[dict[str, Any]] = field(default_factory=list)  # made otherwise than asked
    strict: bool = False  # --strict: a mismatch counts as a failure
    per_server: dict[str, int] = field(default_factory=dict)  # images saved, by webui
    model_switches: int = 0
    hard_stop: dict[str, Any] | None = None  # what a second signal did (dispatch.HardStop)

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        if self.signal is not None:
            return ExitCode.TERMINATED if self.signal == signal.SIGTERM else ExitCode.INTERRUPTED
        bad = self.failed or (self.strict and self.mismatched)
        return ExitCode.PARTIAL if bad else ExitCode.OK

    def summary(self) -> str:
        rate = self.saved / self.elapsed * 60 if self.elapsed > 0 else 0.0
        text = (
            f"{self.saved} images saved, {self.skipped} already done, {len(self.failed)} "
            f"payload(s) failed, {len(self.mismatched)} mismatched, "
            f"{self.skipped + self.saved}/{self.planned_images} done, "
            f"{self.elapsed:.1f} s ({rate:.1f} images/min), exit {int(self.exit_code)}"
            f" -> {self.out_dir}"
        )
        if self.signal is not None:
            text = f"stopped by {signal_name(self.signal)}: {text}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "planned": self.planned_images,
            "skipped": self.skipped,
            "done": self.saved,
            "failed": [
                {
                    "id": r["id"],
                    "payload_index": r["payload_index"],
                    "server": r.get("server"),
                    "error": r["error"],
                }
                for r in self.failed
            ],
            "mismatched": [
                {"id": r["id"], "file": r["file"], "mismatch": r["mismatch"]}
                for r in self.mismatched
            ],
            "images_per_server": self.per_server,
            "model_switches": self.model_switches,
            "images_per_minute": round(self.saved / self.elapsed * 60, 2) if self.elapsed else 0,
            "wall_time": round(self.elapsed, 3),
            "server_version": self.server_version,
            "server_versions": self.server_versions,
            "signal": signal.Signals(self.signal).name if self.signal else None,
            "hard_stop": self.hard_stop,
            "error": str(self.error) if self.error else None,
            "exit_code": int(self.exit_code),
        }


@dataclass(frozen=True)
class Pictures:
    """What the run drew (or left as it was): the gallery's first page and the sheets."""

    gallery: Path | None
    sheets: tuple[Path, ...] = ()


def closing_lines(
    result: RunResult, pictures: Pictures, command: str | None
) -> list[tuple[str, str]]:
    """The closing lines as (kind, text): kind "summary" shows even under --quiet (cron mails
    it), "info" only without it. Paths are absolute; the gallery is a link a terminal opens."""
    out = result.out_dir
    lines = [("summary", result.summary())]
    if pictures.gallery is not None:
        lines.append(("info", f"gallery: {pictures.gallery.absolute().as_uri()}"))
    if pictures.sheets:
        first = pictures.sheets[0]
        more = f" (and {len(pictures.sheets) - 1} more in {first.parent})"
        lines.append(("info", f"sheets: {first}" + (more if len(pictures.sheets) > 1 else "")))
    lines.append(("info", f"manifest: {out / MANIFEST}"))
    lines.append(("info", f"summary: {out / SUMMARY}"))
    if result.mismatched:
        lines.append(
            (
                "summary",
                f"{len(result.mismatched)} image(s) were made otherwise than asked; "
                f'summary.json lists them ("mismatched")',
            )
        )
    left = result.planned_images - result.skipped - result.saved
    if result.strict:  # a mismatch counts as not made: the rerun retries it
        left += len(result.mismatched)
    if command is not None and (result.exit_code != ExitCode.OK or left > 0):
        why = "unfinished"
        if result.signal is not None:
            why = "stopped"
        elif result.error is not None:
            why = "aborted, see below"
        elif result.failed:
            why = "failed payloads"
        lines.append(
            ("summary", f"{left} image(s) not made ({why}); the same command resumes: {command}")
        )
    return lines


def resume_command(argv: Sequence[str], *, fresh: bool, out: str | None, resolved_out: str) -> str:
    """The command that resumes a run started with `sdbatch ARGV`: as typed, but for `--fresh`
    (which would start yet another dir), with the dir spelled out when it came from a
    template (a `{time}` in it would name a new one), and without credentials: `--api-auth`
    is never printed, nor a password in a URL (which the backend refuses anyway)."""
    words = [w for w in argv if w != "--fresh"]
    if fresh or "{" in (out or "{"):  # no --out: the job's output.dir, a template
        words = [*_without_option(words, "--out"), "--out", resolved_out]
    secret = "--api-auth" in words or any(w.startswith("--api-auth=") for w in words)
    words = _without_option(words, "--api-auth")
    for n, word in enumerate(words):
        bare = re.sub(r"(?<=://)([^/@:\s]*):[^/@\s]*@", r"\1@", word)
        secret = secret or bare != word
        words[n] = bare
    note = " (with your credentials, which are not shown)" if secret else ""
    return shlex.join(["sdbatch", *words]) + note


def _without_option(words: list[str], option: str) -> list[str]:
    """`words` without `option VALUE` and `option=VALUE`."""
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept
