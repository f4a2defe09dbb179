"""The stand-in's pictures and files: seeded noise PNGs saved as SaveImage saves them.

A picture's pixels come from its key (nodes.py) and the server's seed only, so the same graph
gives byte-identical files, as the real one did for the same seed. Files are named as the real
server names them, `{prefix}_{counter:05}_.png` with the counter one above the highest already
in that folder, a prefix `a/b/c` giving subfolder `a/b`; PNGs carry a `prompt` text chunk (the
graph, `json.dumps`) and one chunk per `extra_pnginfo` key (each value `json.dumps`-ed), written
with compress_level 4 (SaveImage) or 1 (PreviewImage in temp/). A prefix leaving the output
folder fails at run time, as on the real server.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdbatch.standin.comfyui.nodes import NodeFailure, Pictures, key

OUTSIDE = "**** ERROR: Saving image outside the output folder is not allowed."


def noise(picture_key: str, seed: int, width: int, height: int) -> Image.Image:
    """Seeded noise: as big as a real picture of that size, and never the same for two keys."""
    rng = random.Random(f"{seed}:{picture_key}")
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def _substitute(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    fields = {
        "width": str(width),
        "height": str(height),
        "year": str(now.tm_year),
        "month": f"{now.tm_mon:02}",
        "day": f"{now.tm_mday:02}",
        "hour": f"{now.tm_hour:02}",
        "minute": f"{now.tm_min:02}",
        "second": f"{now.tm_sec:02}",
    }
    for name, value in fields.items():
        prefix = prefix.replace(f"%{name}%", value)
    return prefix


def next_counter(folder: Path, name: str) -> int:
    """One above the highest `{name}_NNNNN_` file in `folder` (1 when there is none)."""
    pattern = re.compile(re.escape(name) + r"_(\d+)_")
    found = [
        int(m.group(1))
        for p in (folder.iterdir() if folder.is_dir() else ())
        if (m := pattern.match(p.name))
    ]
    return max(found, default=0) + 1


class Saver:
    """Writes the pictures of SaveImage (output/) and PreviewImage (temp/)."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.seed = root, seed

    def folder(self, kind: str) -> Path:
        return self.root / kind

    def save(
        self,
        pictures: Pictures,
        prefix: str,
        kind: str,
        graph: Mapping[str, Any],
        pnginfo: Mapping[str, Any] | None,
    ) -> list[dict[str, str]]:
        if kind == "temp":  # PreviewImage: ComfyUI_temp_xxxxx, fast compression
            letters = "".join(secrets.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
            prefix, level = f"ComfyUI_temp_{letters}", 1
        else:
            level = 4
        base = self.folder(kind).resolve()
        prefix = _substitute(prefix, pictures.width, pictures.height)
        subfolder, _, name = prefix.rpartition("/")
        target = (base / subfolder).resolve()
        if target != base and base not in target.parents:
            raise NodeFailure("Exception", OUTSIDE)
        target.mkdir(parents=True, exist_ok=True)
        counter = next_counter(target, name)
        info = PngInfo()
        info.add_text("prompt", json.dumps(graph))
        for chunk, value in (pnginfo or {}).items():
            info.add_text(chunk, json.dumps(value))
        saved = []
        for picture_key in pictures.keys:
            filename = f"{name}_{counter:05}_.png"
            image = noise(key(picture_key), self.seed, pictures.width, pictures.height)
            image.save(target / filename, pnginfo=info, compress_level=level)
            saved.append({"filename": filename, "subfolder": subfolder, "type": kind})
            counter += 1
        return saved

    def load_input(self, name: str) -> Pictures:
        """LoadImage: a picture of the input folder, keyed by its bytes (its IS_CHANGED)."""
        path = self.folder("input") / name
        with Image.open(path) as img:
            width, height = img.size
        return Pictures(width, height, (key("input", path.read_bytes()),))

    def ensure_example(self) -> None:
        """The real install's input folder holds example.png; LoadImage lists it."""
        path = self.folder("input") / "example.png"
        if not any(self.folder("input").iterdir()):
            noise(key("example"), self.seed, 64, 64).save(path)

    def input_digest(self, name: str) -> str | None:
        path = self.folder("input") / name
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None

    def inputs(self) -> list[str]:
        folder = self.folder("input")
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def view(self, filename: str, subfolder: str, kind: str) -> tuple[int, Path | None]:
        """GET /view: (status, file). Refusals as the real one's: a filename with `..` or a
        leading `/` or an unknown type → 400, a subfolder escaping the folder → 403, no such
        file → 404."""
        for suffix in ("output", "input", "temp"):
            if filename.endswith(f"[{suffix}]"):
                filename, kind = filename[: -len(suffix) - 2].rstrip(" "), suffix
        if not filename or filename.startswith("/") or ".." in filename:
            return 400, None
        if kind not in ("output", "input", "temp"):
            return 400, None
        base = self.folder(kind).resolve()
        folder = (base / subfolder).resolve() if subfolder else base
        if folder != base and base not in folder.parents:
            return 403, None
        path = folder / Path(filename).name
        return (200, path) if path.is_file() else (404, None)
