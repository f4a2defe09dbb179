"""What an earlier run finished, and what is left of a plan: kept small, counted fast.

Entry point: `todo(plan, done) -> Todo`. `Done` holds each payload's finished images as a
bitmask (by plan position, by payload id, or by image id for old rows); `Todo` says how many
images are done and left and yields the payloads with an image to make. Why its own module: a
10^6-image resume must count what is left in well under a second, so the common case (every
row found by position, every payload the same number of images) is counted from the masks in
C loops, without building a single payload.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sdbatch.plan.expand import Plan, PlannedPayload


class Masks:
    """Plan position -> bitmask of finished image indexes: a byte per payload while masks fit
    in one (batch_size x n_iter <= 8, the usual case), a dict beside it for the rest."""

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._wide: dict[int, int] = {}

    def add(self, index: int, image: int) -> None:
        if index < 0 or image < 0:
            return
        if image >= 8:
            self._wide[index] = self._wide.get(index, 0) | 1 << image
            return
        if index >= len(self._bytes):
            self._bytes.extend(bytes(index + 1 - len(self._bytes) + len(self._bytes) // 2))
        self._bytes[index] |= 1 << image

    def get(self, index: int, default: int = 0) -> int:
        low = self._bytes[index] if index < len(self._bytes) else 0
        return (low | self._wide.get(index, 0)) or default

    def __bool__(self) -> bool:
        return bool(self._wide) or any(self._bytes)

    def narrow(self, count: int) -> bytes | None:
        """The masks of positions 0..count-1 as bytes, when every one fits in a byte."""
        if self._wide:
            return None
        return bytes(self._bytes[:count]).ljust(count, b"\0")


# Per byte value: how many of its bits are set; and the byte kept to its low k bits.
_POPCOUNT = bytes(bin(n).count("1") for n in range(256))
_LOW_BITS = [bytes(n & ((1 << k) - 1) for n in range(256)) for k in range(9)]


@dataclass(frozen=True)
class Done:
    """The images an earlier run finished, kept small: a 10^6-row manifest must resume in
    seconds and a few hundred MB. Each payload's finished images are a bitmask of image indexes,
    found by plan position when the row was written by this same plan (its `plan` fingerprint),
    else by payload id, else (rows older than payload ids) by image id."""

    by_index: Masks = field(default_factory=lambda: Masks())
    by_payload: Mapping[int, int] = field(default_factory=dict)  # int(payload_id, 16) -> mask
    ids: frozenset[str] = frozenset()
    count: int = 0  # rows counted, duplicates included

    def mask(self, item: PlannedPayload) -> int:
        mask = self.by_index.get(item.index, 0)
        if self.by_payload:  # only then is the payload's content hashed
            mask |= self.by_payload.get(int(item.id, 16), 0)
        if self.ids:
            for i in range(item.image_count):
                if item.image_id(i) in self.ids:
                    mask |= 1 << i
        return mask

    def has(self, item: PlannedPayload, image_index: int) -> bool:
        return bool(self.mask(item) >> image_index & 1)

    def __bool__(self) -> bool:
        return bool(self.by_index or self.by_payload or self.ids)


@dataclass
class Todo:
    """The plan minus what is done: `payloads` yields the ones with at least one image to make."""

    plan: Plan
    done: Done
    done_images: int = 0
    images: int = 0
    _skip: bytearray = field(default_factory=bytearray)  # a bit per payload: all done
    # Or, counted from the masks alone: each payload's finished images, and the all-done mask.
    _masks: bytes = b""
    _full: int = -1

    def skipped(self, index: int) -> bool:
        if self._masks:
            return index < len(self._masks) and self._masks[index] == self._full
        return index >> 3 < len(self._skip) and bool(self._skip[index >> 3] >> (index & 7) & 1)

    def payloads(self) -> Iterator[PlannedPayload]:
        if self.images == 0:  # all done: no second walk of a 10^6-payload plan to find nothing
            return
        for item in self.plan:
            if not self.skipped(item.index):
                yield item


def todo(plan: Plan, done: Done) -> Todo:
    """Count and mark what is left. A payload is sent again if any of its images is missing;
    the writer then skips the images already done, so none is recorded twice."""
    result = Todo(plan, done)
    if not done:  # a fresh run: nothing to look up
        result.images = plan.image_count
        return result
    per = plan.images_per_payload
    masks = done.by_index.narrow(plan.payload_count)
    if per is not None and per <= 8 and masks is not None and not (done.by_payload or done.ids):
        # Every row matched by plan position and every payload has `per` images: count from
        # the masks in C loops; building 10^6 payloads to look each up took seconds.
        masks = masks.translate(_LOW_BITS[per])  # bits of images a payload no longer has
        result.done_images = sum(masks.translate(_POPCOUNT))
        result.images = plan.image_count - result.done_images
        result._masks, result._full = masks, (1 << per) - 1
        return result
    result._skip = bytearray((plan.payload_count + 7) // 8)
    for item in plan:
        count = item.image_count
        finished = (done.mask(item) & ((1 << count) - 1)).bit_count()
        result.done_images += finished
        result.images += count - finished
        if finished == count:
            result._skip[item.index >> 3] |= 1 << (item.index & 7)
    return result
