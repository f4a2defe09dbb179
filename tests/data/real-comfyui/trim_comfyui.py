"""Rebuild exchanges.json from the real ComfyUI 0.3.64's recorded answers.

Usage: python tests/data/real-comfyui/trim_comfyui.py [CAPTURE.tar.gz] [--record URL]

`captured/...` entries come from ../shared/real-webui/captured/comfyui-0.3.64.tar.gz (recorded
from the unmodified ComfyUI 0.3.64 on CPU): each HTTP call as {request: {method, path, json},
status, content_type, body}, and the WebSocket messages of each prompt (`captured/ws/NAME`), cut
out of the whole socket transcript at each prompt's `executing {node: null}`. The 0.5 MB
/object_info and the images are left out (the PNGs' text chunks are kept). `own/...` entries are
this session's recordings (record_comfyui.py) from a running real server; `--record URL`
records them anew, otherwise the ones already in exchanges.json are kept. Tracebacks are cut
to their first line: only their shape is compared. Nothing of ComfyUI's source is kept, only
its answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import record_comfyui  # beside this script

HERE = Path(__file__).resolve().parent
UNRECORDED = "(not recorded)"  # a capture that kept no content type
DEFAULT = HERE.parents[2].parent / "shared" / "real-webui" / "captured" / "comfyui-0.3.64.tar.gz"
# Too big, or nothing the stand-in is compared on (timings; the per-prompt *_ws files, which
# captured/ws/ holds whole; the binary preview frames).
SKIP = {
    "object_info_full",
    "notes",
    "timing_1796161435",
    "preview_latent2rgb_ws_sequence",
    "run1_fresh_ws",
    "run2_identical_ws",
    "run3_newseed_pnginfo_ws",
    "run4_seed42_again_ws",
    "queue_ws",
    "history_all_max2",
    "ws_all_messages",
    "ws_all",
}
SKIP_PREFIXES = ("timing_seed", "taesd_", "kl_", "queue_post_")
# The prompts of ws_all_messages.json, by the name of their POST capture.
CHAIN = ["run1_fresh", "run2_identical", "run3_newseed_pnginfo", "run4_seed42_again", "interrupt"]


def short(value: Any) -> Any:
    """Tracebacks cut to their first line, recursively."""
    if isinstance(value, dict):
        return {
            k: [str(v[0])[:160]] if k == "traceback" and isinstance(v, list) and v else short(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [short(v) for v in value]
    return value


def http(data: dict[str, Any]) -> dict[str, Any]:
    """One HTTP capture in the one shape the tests read."""
    line = data.get("request") or "POST /prompt"
    method, _, path = line.partition(" ")
    body = data.get("body", data.get("resp"))
    sent = data.get("request_body", data.get("body") if "resp" in data else None)
    return short(
        {
            "request": {"method": method, "path": path, "json": sent},
            "status": data.get("status"),
            "content_type": data.get("content_type", UNRECORDED),
            "body": body,
        }
    )


def message(item: Any) -> Any:
    """A socket message as {type, data}: the captures wrap some in [t, (socket,) message] or add
    a `t` key (seconds since the capture began)."""
    if isinstance(item, list) and item and isinstance(item[-1], dict):
        item = item[-1]
    if isinstance(item, dict) and "type" in item:
        return short({k: v for k, v in item.items() if k != "t"})
    return item


def segments(messages: list[Any]) -> list[list[Any]]:
    """The socket's messages cut after each `executing {node: null}`."""
    found: list[list[Any]] = [[]]
    for _t, msg in messages:
        found[-1].append(short(msg))
        if msg.get("type") == "executing" and msg["data"].get("node") is None:
            found.append([])
    return found


def from_tarball(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.name.endswith(".json"):
                name = "/".join(Path(member.name).parts[1:])[: -len(".json")]
                raw[name] = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    for name, data in raw.items():
        if Path(name).name in SKIP or Path(name).name.startswith(SKIP_PREFIXES):
            continue
        is_http = isinstance(data, dict) and ("status" in data and "body" in data)
        if is_http:
            found[f"captured/{name}"] = http(data)
        elif isinstance(data, list):
            found[f"captured/{name}"] = [message(m) for m in data]
        else:
            found[f"captured/{name}"] = short(data)
    # The first socket's whole transcript, one entry per prompt (the connect message first).
    parts = segments(raw["ws_all_messages"])
    found["captured/ws/connect"] = parts[0][:1]
    first = parts[0][1:]
    for name, part in zip(CHAIN, [first, *parts[1:]], strict=False):
        found[f"captured/ws/{name}"] = part
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("capture", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--record", metavar="URL", help="record own/ entries from a real server")
    args = parser.parse_args()
    target = HERE / "exchanges.json"
    found = from_tarball(args.capture)
    if args.record:
        own = record_comfyui.record(args.record.rstrip("/"))
    else:
        old = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
        own = {k.removeprefix("own/"): v for k, v in old.items() if k.startswith("own/")}
    found.update({f"own/{k}": short(v) for k, v in own.items()})
    # One entry per line: small, and a re-recording shows as a per-entry diff.
    lines = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in found.items()]
    target.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"{len(found)} exchanges -> {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
