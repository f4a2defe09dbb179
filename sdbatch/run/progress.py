"""How a run reports itself: a tqdm bar on a terminal, plain log lines under cron, or silence."""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from sdbatch.errors import OutputError

# Without a terminal (cron, a pipe) a line per image is enough for small runs; for big fast ones
# we print at most one line per this many seconds, plus the last one.
LOG_EVERY_SECONDS = 5.0


class LogFile:
    """`--log-file`: every message again, timestamped, for cron. A log that stops taking
    lines (disk full, /dev/full) is said once on stderr and then left alone: the run goes on,
    and no write to it ever raises into a request or writer thread."""

    def __init__(self, stream: TextIO, err: TextIO) -> None:
        self.stream = stream
        self.err = err
        self.failed: OSError | None = None

    @classmethod
    def open(cls, path: str, header: str, err: TextIO) -> LogFile:
        """The log at `path`, opened to append, its first line (`header`) written and flushed:
        a log that cannot take it (a bad path, /dev/full) is an OutputError here, before
        anything is sent. Use it as a context manager: it closes the file."""
        try:
            stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by __exit__)
        except OSError as exc:
            raise OutputError(f"cannot open log file {path}: {exc.strerror}") from exc
        log = cls(stream, err)
        try:
            stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n")
            stream.flush()
        except OSError as exc:
            log.close()
            raise OutputError(f"cannot write log file {path}: {exc.strerror}") from exc
        return log

    def close(self) -> None:
        # What a full log could not take is still buffered; closing would try once more.
        with contextlib.suppress(OSError):
            self.stream.close()

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_line(self, message: str) -> None:
        if self.failed is not None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.stream.write(f"{stamp} {message}\n")
            self.stream.flush()
        except OSError as exc:
            self.failed = exc
            name = getattr(self.stream, "name", "the log file")
            reason = exc.strerror or exc
            print(f"sdbatch: error: cannot write {name}: {reason}", file=self.err, flush=True)


@dataclass(frozen=True)
class Console:
    """The streams and display choices of one invocation, injected so tests need no terminal."""

    out: TextIO
    err: TextIO
    is_tty: bool = False
    quiet: bool = False
    log: LogFile | None = None  # --log-file

    def _emit(self, message: str, *, show: bool = True) -> None:
        if show:
            print(f"sdbatch: {message}", file=self.err, flush=True)
        if self.log is not None:
            self.log.write_line(message)

    def error(self, message: str) -> None:
        self._emit(f"error: {message}")  # --quiet never hides errors

    def warning(self, message: str) -> None:
        """Not an error: the run goes on, but the user should know (shown under --quiet)."""
        self._emit(f"warning: {message}")

    def notice(self, message: str) -> None:
        """A plain line that shows even under --quiet: a stop asked for, what to run next."""
        self._emit(message)

    def summary(self, message: str) -> None:
        self._emit(message)  # the closing line shows even under --quiet: cron mails it

    def info(self, message: str) -> None:
        self._emit(message, show=not self.quiet)


class Progress:
    """Counts finished images and failed payloads, and shows them the way the console allows."""

    def __init__(
        self, console: Console, total: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.console = console
        self.total = total
        self.done = 0
        self.failed_rows: list[Mapping[str, Any]] = []
        self.server_version: str | None = None
        self.versions: dict[str, str] = {}  # server -> its version, as its images say
        self.mismatched_rows: list[Mapping[str, Any]] = []
        self.per_server: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._start = clock()
        self._last_line = float("-inf")
        self._bar: Any = None  # a tqdm bar, on a terminal
        self._told: set[str] = set()  # the mismatches already warned about
        self.closed = False
        if console.is_tty and not console.quiet:
            from tqdm import tqdm  # here: validate and plan never draw a bar, nor import it

            self._bar = tqdm(total=total, unit="img", file=console.err, dynamic_ncols=True)

    @property
    def has_bar(self) -> bool:
        return self._bar is not None

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def image_saved(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        self.server_version = row.get("server_version") or self.server_version
        self.per_server[row.get("server") or "?"] += 1
        if row.get("server_version"):
            self.versions[row.get("server") or "?"] = str(row["server_version"])
        if row["status"] == "mismatch":
            self.mismatched_rows.append(row)
            words = _words(row)
            if words not in self._told:  # once per kind of difference: not once per image
                self._told.add(words)
                self._say(
                    f"the webui did not make what was asked for {row['file']}: {words}", "warning"
                )
        if self._bar is not None:
            self._bar.update(1)
            return
        now = self._clock()
        if self.done == self.total or now - self._last_line >= LOG_EVERY_SECONDS:
            self._last_line = now
            rate = self.done / max(now - self._start, 1e-9)
            self.console.info(f"{self.done}/{self.total} images ({rate:.2f}/s) {row['file']}")

    def payload_failed(self, row: Mapping[str, Any]) -> None:
        self.failed_rows.append(row)
        # With several servers, which one failed matters (a broken GPU, a missing file).
        at = f" on {row['server']}" if row.get("server") else ""
        message = f"payload {row['payload_index']} failed{at} after {row['attempts']} attempt(s): "
        self._say(message + str(row["error"]), "error")

    def _say(self, message: str, label: str) -> None:
        """A line that must be seen, even under --quiet, without tearing the bar."""
        if self._bar is not None:
            self._bar.write(f"sdbatch: {label}: {message}", file=self.console.err)
            if self.console.log is not None:
                self.console.log.write_line(f"{label}: {message}")
        elif label == "error":
            self.console.error(message)
        else:
            self.console.warning(message)

    def show_step(self, text: str) -> None:
        """The sampling step the webui is at, next to the bar (a terminal only)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self.closed = True
        if self._bar is not None:
            self._bar.close()


def _plain(value: Any) -> str:
    """A value as a person reads it: text quoted, nothing else in Python's notation."""
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "nothing"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "nothing"
    return str(value)


def _words(row: Mapping[str, Any]) -> str:
    """Each difference in words: "sampler_name "Euler a" instead of "DPM++ 2M"", or, where
    the backend put it in words, its note."""
    parts = []
    mismatch = row.get("mismatch")
    for key, diff in mismatch.items() if isinstance(mismatch, Mapping) else ():
        if isinstance(diff, list) and len(diff) > 2:
            parts.append(str(diff[2]))
        elif isinstance(diff, list) and len(diff) == 2:
            parts.append(f"{key} {_plain(diff[1])} instead of {_plain(diff[0])}")
        else:
            parts.append(f"{key}: {_plain(diff)}")
    return "; ".join(parts) or "a difference it did not name"
