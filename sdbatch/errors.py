"""The exception family and the exit codes. The CLI turns one into the other in one place."""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in the README."""

    OK = 0  # every planned image saved
    PARTIAL = 1  # the run finished, but some payloads failed
    INVALID = 2  # invalid job file or usage; nothing was sent
    ABORTED = 3  # the server could not be reached, or the run was aborted
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM (128 + SIGTERM)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a job file, with its position (1-based; 0 when unknown)."""

    file: str
    line: int
    column: int
    json_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.json_path}: {self.message}"


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or nothing."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice_hint(word: str, choices: Iterable[str]) -> str:
    """`: did you mean 'x'?` for a name close to `word` (case aside first), else `; it has
    'a', 'b', ...`: what a preflight says of a name the server does not list."""
    choices = list(dict.fromkeys(choices))
    folded = {c.casefold(): c for c in choices}
    close = [folded[word.casefold()]] if word.casefold() in folded else []
    close = close or difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f": did you mean {close[0]!r}?"
    shown = ", ".join(repr(c) for c in choices[:12])
    return f"; it has {shown}{', ...' if len(choices) > 12 else ''}"


class SdbatchError(Exception):
    """Base class of every error sdbatch reports to its user."""

    exit_code: ExitCode = ExitCode.ABORTED


class JobFileError(SdbatchError):
    """The job file cannot be read or is not valid YAML."""

    exit_code = ExitCode.INVALID


class JobValidationError(SdbatchError):
    """The job file parsed but breaks the schema or a semantic rule; carries every problem."""

    exit_code = ExitCode.INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(SdbatchError):
    """An input picture of an img2img job is missing, broken, not a picture or over a limit."""

    exit_code = ExitCode.INVALID


class UsageError(SdbatchError):
    """The command line itself is wrong."""

    exit_code = ExitCode.INVALID


class ServerError(SdbatchError):
    """The webui answered a request with an error that retrying did not cure."""


class ServerUnreachableError(ServerError):
    """The webui could not be reached at all; the run stops, since every payload would fail."""


class RunLockedError(SdbatchError):
    """Another sdbatch run holds the output directory."""


class OutputError(SdbatchError):
    """The output directory cannot be written (disk full, permissions)."""


class PicturesError(OutputError):
    """The sheets or the gallery cannot be written (read-only or full output dir, or a symlink
    where their folder should be); the images and the manifest are untouched."""


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def hide_credentials(text: str) -> str:
    """`text` with the `user:password@` of every URL in it masked: any stage may echo a URL
    back in a message (a schema error, a refusal), none may echo its password."""
    return _USERINFO.sub(r"\1***@", text)
