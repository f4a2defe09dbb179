"""The bytes of an img2img payload's pictures, read when it is sent and not before.

Entry point: `attach(item) -> Attached | None`. The plan carries only each picture's stamp
(name, size, mtime), so a 10,000-picture folder never sits in memory; a request thread reads
one picture (and its mask) right before it posts, and the manifest records what was sent:
the file's name and the sha256 of its bytes. Every backend that sends pictures uses this.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdbatch.plan.expand import PlannedPayload
from sdbatch.plan.pictures import Picture


class InputChanged(Exception):
    """A picture was changed, or removed, after the plan read it: this payload is not sent
    (its id says the old picture); the next run plans it again."""


@dataclass(frozen=True)
class Attached:
    wire: Mapping[str, Any]  # init_images/mask as the webui takes them: plain base64
    recorded: Mapping[str, Any]  # the same fields as the manifest keeps them: {file, sha256}


def attach(item: PlannedPayload) -> Attached | None:
    picture = item.input
    if picture is None:
        return None
    data, digest = _read(picture)
    wire: dict[str, Any] = {"init_images": [_base64(data)]}
    recorded: dict[str, Any] = {"init_images": [{"file": picture.name, "sha256": digest}]}
    if picture.mask is not None:
        data, digest = _read(picture.mask)
        wire["mask"] = _base64(data)
        recorded["mask"] = {"file": picture.mask.name, "sha256": digest}
    return Attached(wire, recorded)


def _base64(data: bytes) -> str:
    # Plain base64: the webui mangles some data: URL shapes (a1111-img2img-... A3).
    return base64.b64encode(data).decode("ascii")


def _read(picture: Picture) -> tuple[bytes, str]:
    """The file's bytes if it is still the one planned (same size and mtime), and their sha256."""
    try:
        with open(picture.path, "rb") as file:
            info = os.fstat(file.fileno())
            if (info.st_size, info.st_mtime_ns) != (picture.size, picture.mtime_ns):
                raise InputChanged(f"{picture.path} changed since the plan was made; run again")
            data = file.read(picture.size + 1)  # never more than planned, whatever it became
    except OSError as exc:
        raise InputChanged(f"{picture.path}: cannot read: {exc.strerror or exc}") from None
    if len(data) != picture.size:
        raise InputChanged(f"{picture.path} changed while being read; run again")
    return data, hashlib.sha256(data).hexdigest()
