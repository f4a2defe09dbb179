"""`python -m sdbatch.standin.comfyui`: run the stand-in ComfyUI until Ctrl-C or SIGTERM.

The lead will wire it into `sdbatch mock-comfyui`; until then this is the shell's way in. It
prints the URL on stdout (a script can read it) and stops cleanly on either signal.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sdbatch.standin.comfyui.comfy import MockComfy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdbatch.standin.comfyui",
        description="A stand-in for ComfyUI 0.3.64 (no GPU, noise images).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8188, help="port (0: any free port)")
    parser.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds per sampler step (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="changes every picture")
    parser.add_argument(
        "--root",
        default=None,
        help="folder for output/, temp/ and input/ (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    if args.step_delay < 0:
        parser.error("--step-delay must be 0 or more")
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        comfy = MockComfy(
            args.host, args.port, step_delay=args.step_delay, seed=args.seed, root=args.root
        ).start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
        return 3
    sys.stdout.write(comfy.url + "\n")
    sys.stdout.flush()
    sys.stderr.write(f"stand-in ComfyUI 0.3.64 at {comfy.url} (files in {comfy.root})\n")
    try:
        while not done.wait(0.5):
            pass
    finally:
        comfy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
