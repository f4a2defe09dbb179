"""Range forms of a numeric grid/zip axis, expanded into the plain list of values they stand for.

Entry point: `expand_axis(spec, kind) -> tuple[values, ...]`, raising `RangeError` with the
relative JSON path of the offending part. `kind` is the field's JSON type, "integer" or
"number"; integer fields only ever get ints.

Accepted forms (each may also be an item of a list, whose expansions are concatenated):

- `{range: [start, stop, step]}`: stop is included when the steps land on it; a negative step
  counts down. Decimal arithmetic, so `[1.0, 2.0, 0.25]` gives exactly 1.0, 1.25, ... 2.0.
- `{linspace: [start, stop, count]}`: count evenly spaced values, both ends included, rounded
  to 6 significant digits (more if start/stop have more). For an integer field every value
  must be whole.
- The webui X/Y/Z plot's text (scripts/xyz_grid.py): comma-separated items, each a number,
  `"10-50 (+10)"` (start-stop, step), `"1-10 [5]"` (start-stop, count) or `"1-5"` (step 1).
  As in the webui, a count range on an integer field truncates each value to an int. Unlike
  the webui, the stop is always included (`"10-2 (-2)"` ends with 2) and an empty range is an
  error instead of nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

Number = int | float
JsonPath = tuple[Any, ...]

_NUM = r"[+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
_STEP_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*(?:\(\s*({_NUM})\s*\))?\s*")
_COUNT_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*\[\s*(\d+)\s*\]\s*")
_PLAIN = re.compile(rf"\s*({_NUM})\s*")
SYNTAX = '"10-50 (+10)", "1-10 [5]" or "1, 2, 5"'
# One range's values are built in memory (twice: by the rules and by the loader), so a range is
# refused when it would expand to more than this; ten thousand columns is no sweep to look at.
MAX_RANGE_VALUES = 10_000


class RangeError(ValueError):
    """A range that is malformed or empty; `path` is relative to the axis value."""

    def __init__(self, message: str, path: JsonPath = (), *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.malformed = malformed  # a shape the schema rejects already: not worth a 2nd message


def is_numeric(kind: str | None) -> bool:
    return kind in ("integer", "number")


def expand_axis(spec: Any, kind: str) -> tuple[Any, ...]:
    """The values an axis written as `spec` stands for (a list's other items pass through)."""
    if isinstance(spec, list):
        values: list[Any] = []
        for i, item in enumerate(spec):
            try:
                values += _expand_item(item, kind)
            except RangeError as exc:
                raise RangeError(exc.message, (i, *exc.path), malformed=exc.malformed) from None
        return tuple(values)
    return tuple(_expand_item(spec, kind))


def _well_formed(args: Any) -> bool:
    numbers = isinstance(args, list) and len(args) == 3
    return numbers and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)


def _expand_item(item: Any, kind: str) -> list[Any]:
    if isinstance(item, dict) and (len(item) != 1 or not _well_formed(next(iter(item.values())))):
        raise RangeError("malformed range", malformed=True)
    if isinstance(item, dict) and "range" in item:
        return _mapping_range(item["range"], kind)
    if isinstance(item, dict) and "linspace" in item:
        return _mapping_linspace(item["linspace"], kind)
    if isinstance(item, str):
        return _webui_text(item, kind)
    return [item]  # a plain value; the schema has checked its type


def _dec(value: Number) -> Decimal:
    # repr() is the shortest text that reads back as the same float: 0.1 -> Decimal("0.1").
    return Decimal(repr(value))


def _out(value: Decimal, kind: str, integral: bool) -> Number:
    """Ints stay ints (and integer fields get only ints); everything else is a float."""
    if kind == "integer" or integral:
        return int(value)
    return float(value)


def _whole(value: Number, kind: str, what: str, path: JsonPath = ()) -> None:
    if kind == "integer" and value != int(value):
        raise RangeError(
            f"{what} {value!r} is not a whole number, but this field is an integer", path
        )


def _mapping_range(args: Sequence[Number], kind: str) -> list[Number]:
    start, stop, step = args
    for i, (what, value) in enumerate(zip(("start", "stop", "step"), args, strict=True)):
        _whole(value, kind, what, ("range", i))
    try:
        return _stepped(start, stop, step, kind)
    except RangeError as exc:
        raise RangeError(exc.message, ("range",)) from None


def _bounded(count: int, *ends: Number) -> None:
    if not all(math.isfinite(v) for v in ends):
        raise RangeError("a range needs finite numbers")
    if count > MAX_RANGE_VALUES:
        raise RangeError(
            f"this range has {count:,} values, more than the {MAX_RANGE_VALUES:,} one range may "
            "expand to"
        )


def _stepped(start: Number, stop: Number, step: Number, kind: str) -> list[Number]:
    _bounded(0, start, stop, step)
    if step == 0:
        raise RangeError("the step of a range must not be 0")
    if (stop - start) * step < 0:
        direction = "up" if step > 0 else "down"
        raise RangeError(
            f"empty range: step {step} counts {direction} from {start}, away from {stop} "
            "(use a negative step to count down)"
        )
    a, b, s = _dec(start), _dec(stop), _dec(step)
    integral = all(isinstance(v, int) for v in (start, stop, step))
    count = int((b - a) / s) + 1  # int() truncates toward 0; the quotient is >= 0 here
    _bounded(count)
    return [_out(a + i * s, kind, integral) for i in range(count)]


def _mapping_linspace(args: Sequence[Number], kind: str) -> list[Number]:
    start, stop, count = args
    try:
        values = _spaced(start, stop, int(count))
        for value in values:
            _whole(value, kind, "linspace value")
    except RangeError as exc:
        raise RangeError(exc.message, ("linspace",)) from None
    return [int(v) if kind == "integer" else float(v) for v in values]


def _spaced(start: Number, stop: Number, count: int) -> list[float]:
    if count < 1:
        raise RangeError("a linspace needs a count of at least 1")
    _bounded(count, start, stop)
    if count == 1:
        return [float(start)]
    a, b = _dec(start), _dec(stop)
    digits = max(6, *(len(d.as_tuple().digits) for d in (a, b)))
    step = (b - a) / (count - 1)
    # Rounding keeps 0.1 + 2 * 0.2 from showing up as 0.5000000000000001 in file names.
    return [float(f"{a + i * step:.{digits}g}") for i in range(count)]


def _number(text: str, kind: str) -> Number:
    text = text.replace(" ", "")
    if len(text) > 40:  # int() of a 5000-digit text is a ValueError; no setting is that big
        raise RangeError(f"{text[:20]}... is too long a number")
    value: Number = float(text) if "." in text else int(text)
    _whole(value, kind, "value")
    return int(value) if kind == "integer" else value


def _webui_text(text: str, kind: str) -> list[Number]:
    values: list[Number] = []
    for part in text.split(","):
        if match := _PLAIN.fullmatch(part):
            values.append(_number(match[1], kind))
        elif match := _STEP_RANGE.fullmatch(part):
            start, stop = _number(match[1], kind), _number(match[2], kind)
            step = _number(match[3], kind) if match[3] else 1
            values += _stepped(start, stop, step, kind)
        elif match := _COUNT_RANGE.fullmatch(part):
            start, stop = _number(match[1], "number"), _number(match[2], "number")
            spaced = _spaced(start, stop, int(match[3]))
            # The webui's own int(x) over np.linspace: truncation, so pasted axes match.
            values += [int(v) for v in spaced] if kind == "integer" else spaced
        else:
            shown = repr(part.strip()) if part.strip() else "an empty item"
            raise RangeError(
                f"{shown} is not of type {kind!r} nor a range like {SYNTAX}"
                if text == part
                else f"{shown} in {text!r} is not a number nor a range like {SYNTAX}"
            )
    return values
