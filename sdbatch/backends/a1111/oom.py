"""Out-of-memory errors: recognise them, and split a batch so every image keeps its seed.

Entry point: `split_batch(payload) -> list[Part]`. The worker sends the parts in order when the
webui could not fit a batch in GPU memory, and splits a part again if it runs out of memory too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Retries of an out-of-memory error that splitting cannot cure (batch_size 1), whatever
# server.retries says: the webui frees its cache after an error (torch_gc), so another try can
# fit, but a job that does not fit in the GPU will not fit on the fifth try either.
OOM_RETRIES = 2


def is_out_of_memory(status: int, message: str) -> bool:
    """A 5xx whose error is torch's OutOfMemoryError (A1111, Forge) or whose text says "out of
    memory" (SD.Next, other backends: "MPS backend out of memory")."""
    text = message.lower()
    return status >= 500 and ("outofmemoryerror" in text or "out of memory" in text)


@dataclass(frozen=True)
class Part:
    payload: Mapping[str, Any]  # what to send instead
    first_image: int  # where its images start among the split payload's images


def batch_size(payload: Mapping[str, Any]) -> int:
    return int(payload.get("batch_size") or 1)


def _fixed(seed: Any) -> bool:
    # -1, None and "" all mean "draw a random seed" (get_fixed_seed).
    return isinstance(seed, int) and not isinstance(seed, bool) and seed != -1


def _part(payload: Mapping[str, Any], first: int, size: int) -> dict[str, Any]:
    part = {**payload, "batch_size": size, "n_iter": 1}
    # The webui gives image i of a job `seed + i` and `subseed + i` (a1111-api.md §7), except
    # that with a variation seed (subseed_strength != 0) every image shares `seed`. Shifting by
    # the part's first image keeps each image's seeds exactly.
    variation = (payload.get("subseed_strength") or 0) != 0
    if not variation and _fixed(payload.get("seed")):
        part["seed"] = payload["seed"] + first
    if variation and _fixed(payload.get("subseed")):
        part["subseed"] = payload["subseed"] + first
    # Known limitation: a random subseed (-1) is drawn afresh for each part, so the variation
    # seeds of a split batch are not consecutive as they would have been in one job.
    return part


def split_batch(payload: Mapping[str, Any]) -> list[Part]:
    """Two parts with `n_iter: 1` for each iteration, of ceil(B/2) and floor(B/2) images.

    Images are batch-major (a1111-api.md §7): iteration k makes images k*B .. k*B+B-1, so the
    parts, in order, make exactly the planned images in the planned order.
    """
    size = batch_size(payload)
    if size < 2:
        raise ValueError("a batch of one image cannot be split")
    n_iter = int(payload.get("n_iter") or 1)
    big = (size + 1) // 2
    parts = []
    for iteration in range(n_iter):
        for offset, count in ((0, big), (big, size - big)):
            first = iteration * size + offset
            parts.append(Part(_part(payload, first, count), first))
    return parts
