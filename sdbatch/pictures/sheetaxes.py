"""Which fields of a run's images vary, which of them are plan axes, and their plan order:
what the sheet builder needs to know before it lays out any pixel.

Entry points: `varying`, `split_fields`, `axis_values`, `default_axes` (all over manifest
records, never the server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdbatch.output.manifest import Record, distinct, field_names, value_key

# An img2img row's picture (name and sha256): told apart on a sheet by {input}, and a picture
# changed between runs leaves rows of both versions, which are one picture to a sheet.
_PICTURE_STAMPS = ("init_images", "mask")


def _determined(records: Sequence[Record], by: Sequence[str], name: str) -> bool:
    """Whether `name` takes one value for each combination of the fields `by`."""
    seen: dict[tuple[str, ...], str] = {}
    for r in records:
        key = tuple(value_key(r.fields.get(f)) for f in by)
        if seen.setdefault(key, value_key(r.fields.get(name))) != value_key(r.fields.get(name)):
            return False
    return True


def varying(records: Sequence[Record]) -> list[str]:
    """Fields with more than one value: the plan's own axes first (the template, vars, then grid
    cells in the job's order, so the fastest-changing one is the last), then payload and server
    fields."""
    order: dict[str, None] = {"template": None}
    for part in ("vars", "cell"):
        for r in records:
            order.update(dict.fromkeys(getattr(r, part)))
    order.update(dict.fromkeys(field_names(records)))
    return [n for n in order if len(distinct(records, n)) > 1]


def split_fields(records: Sequence[Record], axes: Sequence[str]) -> list[str]:
    """The fields that split sheets: varying, not an axis, not the seed, and not fixed by the
    axes plus the splits before them (a prompt rendered from an axis var does not split)."""
    split: list[str] = []
    for name in varying(records):
        if name in _PICTURE_STAMPS:
            continue
        if name not in axes and name != "seed" and not _determined(records, [*axes, *split], name):
            split.append(name)
    return split


def axis_values(
    records: Sequence[Record], name: str, planned: Sequence[Any] | None = None
) -> list[Any]:
    """The values of an axis in plan order: the planned ones (all of them, done or not), then
    any the manifest has beyond them (rows of an earlier version of the job).

    Without a plan, as far as the manifest tells it: two values are ordered when some rows
    that differ only in this field (same grid cell otherwise, same vars, same prompt) show
    which was planned first. A partial run may not tell for every pair: then numbers go in
    ascending order and other values by first appearance."""
    if planned:
        known = {value_key(v) for v in planned}
        extra = [v for v in distinct(records, name) if value_key(v) not in known]
        return [*planned, *extra]
    return _manifest_order(records, name)


def _manifest_order(records: Sequence[Record], name: str) -> list[Any]:
    """The values of an axis in plan order, as far as the manifest tells it.

    Two values are ordered when some rows that differ only in this field (same grid cell
    otherwise, same vars, same prompt) show which was planned first. A partial run may not tell
    for every pair: then numbers go in ascending order and other values by first appearance."""
    values = distinct(records, name)
    keys = [value_key(v) for v in values]
    context = [
        f for f in {"prompt": None, "template": None}.keys() | plan_axes(records) if f != name
    ]
    after: dict[str, set[str]] = {k: set() for k in keys}
    last: dict[tuple[str, ...], str] = {}
    for r in records:  # in plan order
        ctx, key = (
            tuple(value_key(r.fields.get(f)) for f in sorted(context)),
            value_key(r.fields.get(name)),
        )
        if last.get(ctx, key) != key:
            after[key].add(last[ctx])
        last[ctx] = key
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    def tiebreak(k: str) -> tuple[float, int]:
        i = keys.index(k)
        return (float(values[i]) if numeric else 0.0, i)

    ordered: list[str] = []
    while len(ordered) < len(keys):
        ready = [k for k in keys if k not in ordered and after[k] <= set(ordered)]
        # A cycle (an edited job reordered its values between runs): take the rest as they come.
        pick = min(ready or [k for k in keys if k not in ordered], key=tiebreak)
        ordered.append(pick)
    return [values[keys.index(k)] for k in ordered]


def plan_axes(records: Sequence[Record]) -> set[str]:
    return {"template"}.union(*(r.vars for r in records), *(r.cell for r in records))


def default_axes(
    records: Sequence[Record], exclude: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """x: the fastest-changing plan axis (the last grid axis), y: the one before it. Without two
    grid or template axes, other varying fields (the prompt) fill in, and the seed last."""
    names = [n for n in varying(records) if n not in exclude]
    planned = plan_axes(records)
    axes = [n for n in names if n in planned]
    others = [n for n in names if n not in planned and n != "seed"]
    if len(axes) >= 2:
        return axes[-1], axes[-2]
    picks = axes + others + [n for n in names if n == "seed"]
    return (picks[0] if picks else None, picks[1] if len(picks) > 1 else None)
