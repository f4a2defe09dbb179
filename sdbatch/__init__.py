"""sdbatch: turn a YAML job file into images through the AUTOMATIC1111 webui API, unattended."""

from __future__ import annotations

from sdbatch.errors import (
    ExitCode,
    JobFileError,
    JobValidationError,
    OutputError,
    Problem,
    RunLockedError,
    SdbatchError,
    ServerError,
    ServerUnreachableError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "ExitCode",
    "JobFileError",
    "JobValidationError",
    "OutputError",
    "Problem",
    "RunLockedError",
    "SdbatchError",
    "ServerError",
    "ServerUnreachableError",
    "UsageError",
    "__version__",
]
