"""`sdbatch mock-webui`: serve the stand-in webui until Ctrl-C.

The lead's `sdbatch.cli` adds these arguments to its sub-command and calls `run`.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import TextIO

from sdbatch.standin.a1111.behaviours import NAMES
from sdbatch.standin.a1111.catalog import CATALOGS
from sdbatch.standin.a1111.images import FORMATS
from sdbatch.standin.a1111.webui import MockWebui

AUTH_ENV = "SDBATCH_MOCK_AUTH"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (7860; 0 picks a free one)")
    parser.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="simulated sampling time per step and image",
    )
    parser.add_argument(
        "--image-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="simulated extra time per image",
    )
    parser.add_argument(
        "--samples-format", choices=FORMATS, default="png", help="image format of the answers (png)"
    )
    parser.add_argument(
        "--noise",
        action="store_true",
        help="answer with seeded noise (as random-weight models draw: PNGs of real-photo size)",
    )
    parser.add_argument("--seed", type=int, help="make random seeds and faults reproducible")
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="answer this fraction of txt2img requests with a 500",
    )
    parser.add_argument(
        "--reset-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="reset the connection of this fraction of txt2img requests",
    )
    parser.add_argument(
        "--auth",
        metavar="USER:PASS",
        help=f"require HTTP Basic auth on /sdapi/v1/* (or set {AUTH_ENV})",
    )

    parser.add_argument(
        "--behaviour",
        choices=NAMES,
        default="v1.10",
        help="which webui to pose as: A1111 v1.10.1/v1.9.4/v1.8.0, Forge or SD.Next (v1.10)",
    )
    parser.add_argument(
        "--substitute",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="silently use VALUE instead of the requested FIELD (sampler_name, scheduler, "
        "sd_model_checkpoint, steps, cfg_scale, width, height); repeatable",
    )
    parser.add_argument(
        "--catalog",
        choices=sorted(CATALOGS),
        default="default",
        help="the installed models: default (v1-5, sdxl, dreamshaper) or tiny (tinyC, tinyD and "
        "tinyNaN, as ../shared/real-webui sets up the real webui)",
    )
    parser.add_argument(
        "--model-load-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="simulated time a checkpoint switch takes",
    )


def _parse_substitute(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--substitute must look like FIELD=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep:
        raise ValueError(f"--auth must look like USER:PASS, got {value!r}")
    return user, password


def run(args: argparse.Namespace, *, out: TextIO, stop: threading.Event | None = None) -> int:
    """Serve until KeyboardInterrupt (which propagates after a clean stop) or until `stop` is
    set, which tests use instead of a signal."""
    auth = _parse_auth(args.auth or os.environ.get(AUTH_ENV))
    server = MockWebui(
        args.host,
        args.port,
        auth=auth,
        step_delay=args.step_delay,
        image_delay=args.image_delay,
        samples_format=args.samples_format,
        noise=args.noise,
        seed=args.seed,
        behaviour=args.behaviour,
        substitute=_parse_substitute(args.substitute),
        model_load_delay=args.model_load_delay,
        catalog=None if args.catalog == "default" else CATALOGS[args.catalog],
    )
    if args.fail_rate or args.reset_rate:
        server.inject(fail_rate=args.fail_rate, reset_rate=args.reset_rate)
    with server:
        out.write(f"stand-in webui listening on {server.url}\n")
        out.flush()
        waiter = stop or threading.Event()
        # wait() with a timeout keeps the main thread responsive to Ctrl-C on every platform.
        while not waiter.wait(0.5):
            pass
    return 0
