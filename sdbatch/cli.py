"""The command line: `sdbatch validate | plan | run | mock-webui`.

`main(argv) -> int` parses arguments, calls one command function, and is the one place where
exceptions become messages and exit codes. Commands contain no `sys.exit` and print no traceback.

Each command imports the stages it uses when it runs, not this module: `--help`, `validate` and
`plan` then start without requests, tenacity, Pillow or the stand-in server (test_cli checks).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sdbatch import __version__
from sdbatch.backends.auth import AUTH_ENV, parse_auth
from sdbatch.errors import (
    ExitCode,
    JobValidationError,
    OutputError,
    Problem,
    SdbatchError,
)
from sdbatch.output.outdir import fill_dir_template, real_dir

if TYPE_CHECKING:
    from sdbatch.backends.base import Connection
    from sdbatch.job.loader import Job
    from sdbatch.output.writer import RunInfo
    from sdbatch.plan.expand import Plan
    from sdbatch.run.progress import Console

Command = Callable[[argparse.Namespace, "Console"], int]
MOCK_WEBUI = "mock-webui"
MOCK_COMFYUI = "mock-comfyui"


def _validate(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.job.loader import load_job

    problems: list[Problem] = []
    for path in args.jobs:
        try:
            load_job(path)
        except JobValidationError as exc:
            problems.extend(exc.problems)
        else:
            console.info(f"{path}: ok")
    if problems:
        raise JobValidationError(problems)
    return ExitCode.OK


def _describe(plan: Plan) -> str:
    text = f"{plan.payload_count} payloads, {plan.image_count} images"
    if plan.rng_seed is not None:
        text += f" (seeds drawn with random_seed {plan.rng_seed})"
    return text


def _plan(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.job.loader import load_job
    from sdbatch.plan.expand import build_plan

    plan = build_plan(load_job(args.job))
    header = _describe(plan)
    # With --json stdout carries only JSON lines, so the count goes to stderr.
    print(header, file=console.err if args.json else console.out)
    for n, item in enumerate(plan):
        if args.limit is not None and n >= args.limit:
            break
        if args.json:
            print(json.dumps(dict(item.payload), ensure_ascii=False), file=console.out)
        else:
            fields = " ".join(f"{k}={v}" for k, v in item.cell.items())
            prompt = str(item.payload["prompt"])
            short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
            print(
                f"#{item.index} seed={item.payload['seed']} {fields} {short!r}".replace("  ", " "),
                file=console.out,
            )
    return ExitCode.OK


def _output_dir(job: Job, override: str | None, now: dt.datetime) -> tuple[Path, RunInfo]:
    from sdbatch.output.writer import RunInfo

    # {date} and {time} resolve once, at the start of the run, so a run past midnight stays in
    # one dir; a rerun the same day (same {date}) resumes it.
    run = RunInfo(name=job.name, date=now.strftime("%Y-%m-%d"), time=now.strftime("%H%M%S"))
    template = override if override is not None else job.output.dir
    source = "--out" if override is not None else "output.dir"
    values = {"name": run.name, "date": run.date, "time": run.time}
    return real_dir(Path(fill_dir_template(template, values, source))), run


def _job_for_run(args: argparse.Namespace) -> Job:
    from sdbatch.job.loader import load_job

    job = load_job(args.job)
    server = job.server
    if args.server:  # repeated: several webuis
        server = dataclasses.replace(server, url=args.server[0], urls=tuple(args.server))
    if getattr(args, "wait", None) is not None:
        server = dataclasses.replace(server, wait=args.wait)
    return dataclasses.replace(job, server=server)


def _connect(job: Job, args: argparse.Namespace, *, preflight: bool) -> Connection:
    """The job's servers through the backend its `server.type` names, preflight included."""
    from sdbatch.backends.registry import backend_for

    auth = parse_auth(args.api_auth or os.environ.get(AUTH_ENV))
    return backend_for(job).connect(job, auth=auth, preflight=preflight, environ=os.environ)


def _run(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.output.resume import fresh_dir
    from sdbatch.plan.expand import build_plan
    from sdbatch.run.report import resume_command
    from sdbatch.run.runner import run_job

    job = _job_for_run(args)
    plan = build_plan(job)
    out_dir, run = _output_dir(job, args.out, dt.datetime.now())
    if args.fresh:
        out_dir = fresh_dir(out_dir)
    run = dataclasses.replace(run, rng_seed=plan.rng_seed)
    console.info(f"{_describe(plan)}, writing to {out_dir}")
    connection = _connect(job, args, preflight=not args.no_preflight)
    checked = "passed" if connection.checked else "skipped"
    console.info(f"preflight {checked}: {connection.describe()}")
    result = run_job(
        plan,
        out_dir,
        connection=connection,
        console=console,
        run_info=run,
        verify=args.verify,
        strict=args.strict,
        command=resume_command(
            args.argv, fresh=args.fresh, out=args.out, resolved_out=str(out_dir)
        ),
    )
    return result.exit_code


def _check(args: argparse.Namespace, console: Console) -> int:
    job = _job_for_run(args)
    connection = _connect(job, args, preflight=True)
    print(f"{args.job}: ok on {connection.describe()}", file=console.out)
    return ExitCode.OK


def _sheet(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.pictures.sheet import sheet_command

    out_dir = real_dir(Path(args.out_dir))
    with _writing(out_dir):
        paths = sheet_command(out_dir, args.x, args.y, args.z)
    for path in paths:
        print(path, file=console.out)
    return ExitCode.OK


@contextlib.contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """The boundary of a stage that draws into `out_dir`: a file-system failure (read-only,
    full, a path through a file) is an OutputError with its reason, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or out_dir
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from exc


def _gallery(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.pictures.gallery import build_gallery

    # read_records, under build_gallery, says so when the dir holds no manifest.
    out_dir = real_dir(Path(args.out_dir))
    with _writing(out_dir):
        page = build_gallery(out_dir)
    print(page, file=console.out)
    return ExitCode.OK


def _schema(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.job.schema import schema_text
    from sdbatch.job.schemafile import HEADER, write_schema

    if args.write is None:
        console.out.write(schema_text())
        return ExitCode.OK
    path = write_schema(Path(args.write))
    print(path, file=console.out)
    console.info(f"a job file next to it names it on its first line: {HEADER}")
    return ExitCode.OK


def _mock_webui(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.standin.a1111 import cli as mock_cli

    return mock_cli.run(args, out=console.out)


def _mock_comfyui(args: argparse.Namespace, console: Console) -> int:
    from sdbatch.standin.comfyui.__main__ import main as comfy_main

    return comfy_main(args.mock_args)


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        metavar="URL",
        action="append",
        help="webui URL (overrides server.url / server.urls); repeat for several webuis",
    )
    p.add_argument(
        "--api-auth",
        metavar="USER:PASS",
        help=f"HTTP Basic credentials of the webui's --api-auth (or set {AUTH_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdbatch", description="Batch txt2img through the AUTOMATIC1111 webui API."
    )
    parser.add_argument("--version", action="version", version=f"sdbatch {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check job files; exit 0 or 2")
    p.add_argument("jobs", nargs="+", metavar="JOB")
    p.set_defaults(func=_validate)

    p = sub.add_parser("plan", help="show the payloads a job expands to, without a server")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--json", action="store_true", help="payloads as JSON lines")
    p.add_argument("--limit", type=int, metavar="N", help="show at most N payloads")
    p.set_defaults(func=_plan)

    p = sub.add_parser("run", help="run a job against the webui")
    p.add_argument("job", metavar="JOB")
    _server_options(p)
    p.add_argument("--out", metavar="DIR", help="output directory (overrides output.dir)")
    p.add_argument("--quiet", action="store_true", help="only errors and the summary line")
    p.add_argument(
        "--fresh", action="store_true", help="start over in a new dir instead of resuming"
    )
    p.add_argument(
        "--verify", action="store_true", help="hash every finished image before trusting it"
    )
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the webui to come up (overrides server.wait)",
    )
    p.add_argument("--log-file", metavar="PATH", help="also append timestamped lines to PATH")
    p.add_argument(
        "--strict", action="store_true", help="an image the webui made otherwise than asked fails"
    )
    p.add_argument(
        "--no-preflight", action="store_true", help="skip checking the job against the webui"
    )
    p.set_defaults(func=_run)

    p = sub.add_parser("check", help="check a job against the webui(s) without generating")
    p.add_argument("job", metavar="JOB")
    _server_options(p)
    p.set_defaults(func=_check)

    p = sub.add_parser("sheet", help="(re)build labelled X/Y/Z sheets from an output dir")
    p.add_argument("out_dir", metavar="OUTDIR")
    p.add_argument("--x", metavar="FIELD", help="field for the columns")
    p.add_argument("--y", metavar="FIELD", help="field for the rows")
    p.add_argument("--z", metavar="FIELD", help="one sheet per value of this field")
    p.set_defaults(func=_sheet)

    p = sub.add_parser("gallery", help="(re)build index.html of an output dir")
    p.add_argument("out_dir", metavar="OUTDIR")
    p.set_defaults(func=_gallery)

    p = sub.add_parser("schema", help="print the job file's JSON Schema, or write it for an editor")
    p.add_argument(
        "--write",
        metavar="DIR_OR_JOB",
        help="write job.schema.json into DIR, or next to the job file JOB",
    )
    p.set_defaults(func=_schema)

    # The stand-in's options live in its own module, which imports the whole stand-in, so
    # parse_args adds them only once the command is mock-webui; until then whatever follows
    # the command, -h included, is left over for that parser.
    p = sub.add_parser(MOCK_WEBUI, help="serve the built-in stand-in webui", add_help=False)
    p.set_defaults(func=_mock_webui)
    # The ComfyUI stand-in parses its own options (--port P, --step-delay S, ...) likewise.
    p = sub.add_parser(MOCK_COMFYUI, help="serve the built-in stand-in ComfyUI", add_help=False)
    p.set_defaults(func=_mock_comfyui)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, with the arguments of mock-webui parsed by their own parser."""
    args, rest = parser.parse_known_args(argv)
    if args.command == MOCK_COMFYUI:
        args.mock_args = rest
        return args
    if args.command != MOCK_WEBUI:
        if rest:  # what parse_args says
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args
    from sdbatch.standin.a1111 import cli as mock_cli

    mock = argparse.ArgumentParser(prog=f"{parser.prog} {MOCK_WEBUI}")
    mock_cli.add_arguments(mock)
    return mock.parse_args(rest, namespace=args)


class _ToConsole(logging.Handler):
    """The "sdbatch" logger's records as console lines, so a failing log file is handled in
    one place (`LogFile`) and never raises into a request or writer thread."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.notice(record.getMessage())  # the logger's level stands for --quiet


def _route_logging(console: Console) -> None:
    # Retry notices and warnings go through the "sdbatch" logger; each invocation points it at
    # its console (and through it at --log-file).
    logger = logging.getLogger("sdbatch")
    logger.handlers.clear()
    logger.addHandler(_ToConsole(console))
    logger.setLevel(logging.ERROR if console.quiet else logging.INFO)
    logger.propagate = False


def _traceback_anywhere(argv: list[str]) -> tuple[list[str], bool]:
    """`--traceback` may stand anywhere (before or after the command): taken out here, so
    every parser, the stand-in's included, sees the rest as usual."""
    cut = argv.index("--") if "--" in argv else len(argv)
    wanted = "--traceback" in argv[:cut]
    return [a for i, a in enumerate(argv) if not (i < cut and a == "--traceback")], wanted


def _stopping() -> None:
    """The process is on its way out (Ctrl-C, or done): a further Ctrl-C must not kill it
    half-way through its last words with a traceback or a signal exit instead of its code."""
    import signal  # here: `sdbatch --help` should not pay for what only a run needs
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Run one command; return its exit code. The only place errors become exit codes."""
    own_process = argv is None  # the sdbatch process itself, not a caller's in-process use
    try:
        return _main(argv, console)
    finally:
        if own_process:
            _stopping()


def _main(argv: Sequence[str] | None, console: Console | None) -> int:
    words, traceback = _traceback_anywhere(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(build_parser(), words)
    args.traceback = traceback or args.traceback
    args.argv = words
    if console is None:
        from sdbatch.run.progress import Console

        console = Console(sys.stdout, sys.stderr, is_tty=sys.stderr.isatty())
    console = dataclasses.replace(console, quiet=getattr(args, "quiet", False))
    with contextlib.ExitStack() as stack:
        # The log stays open until the error, if any, is reported: into it too.
        try:
            if getattr(args, "log_file", None):
                from sdbatch.run.progress import LogFile

                header = f"sdbatch {__version__}: {args.command} {args.job}"
                log = stack.enter_context(LogFile.open(args.log_file, header, console.err))
                console = dataclasses.replace(console, log=log)
            _route_logging(console)
            return int(args.func(args, console))
        except JobValidationError as exc:
            if args.traceback:
                raise
            console.error(f"invalid job file ({len(exc.problems)} problem(s)):")
            for problem in exc.problems:
                print(problem, file=console.err)
                if console.log is not None:
                    console.log.write_line(str(problem))
            return ExitCode.INVALID
        except SdbatchError as exc:
            if args.traceback:
                raise
            console.error(str(exc))
            return exc.exit_code
        except KeyboardInterrupt:
            if argv is None:
                _stopping()
            if args.traceback:
                raise
            console.notice("interrupted (Ctrl-C)")
            return ExitCode.INTERRUPTED
        except BrokenPipeError:
            # `sdbatch plan JOB | head`: the reader has all it wanted. Point stdout at /dev/null
            # so the interpreter's final flush does not complain about the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return ExitCode.OK
        finally:
            logging.getLogger("sdbatch").handlers.clear()
