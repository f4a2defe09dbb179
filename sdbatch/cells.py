"""The cells of a sweep: axes crossed, minus `exclude:`, counted without being expanded.

Entry point: `surviving(axes, rules, weight) -> int`, the number (or, with `weight`, the
weighted number) of cells no rule excludes. A grid axis, a vars axis and a whole zip group are
each one `CellAxis`; a rule excludes a cell when every field it names has its value there.

Counting is exact and never walks the cells: the axes are folded in one by one, keeping for
every set of rules still fully matched (a bitmask) the weighted number of partial cells. Rows
of an axis that satisfy the same rules fall into one class, so the work is about
axes x distinct masks x classes, not the size of the grid: a 10^6-cell grid with a few rules
counts in microseconds, and overlapping rules are handled without inclusion-exclusion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = tuple[Any, ...]


@dataclass(frozen=True)
class CellAxis:
    names: tuple[str, ...]  # one field, or the fields of a zip group
    rows: tuple[Row, ...]  # one value per name in each row

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, row: Row) -> Iterator[tuple[str, Any]]:
        return zip(self.names, row, strict=True)


def applicable(rules: Sequence[Mapping[str, Any]], names: set[str]) -> list[Mapping[str, Any]]:
    """The rules that can match here: one naming a field these cells lack matches none."""
    return [rule for rule in rules if set(rule) <= names]


def excluded(cell: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> bool:
    return any(all(cell[k] == v for k, v in rule.items()) for rule in rules)


def _mask(axis: CellAxis, row: Row, rules: Sequence[Mapping[str, Any]]) -> int:
    """Bit r is set unless this row contradicts a field that rule r names."""
    mask = 0
    for r, rule in enumerate(rules):
        if all(rule[name] == value for name, value in axis.values(row) if name in rule):
            mask |= 1 << r
    return mask


def surviving(
    axes: Sequence[CellAxis],
    rules: Sequence[Mapping[str, Any]],
    weight: Callable[[CellAxis, Row], int] = lambda axis, row: 1,
) -> int:
    """Sum over the cells no rule excludes of the product of their rows' weights.

    `rules` must only name fields of `axes` (see `applicable`).
    """
    states = {(1 << len(rules)) - 1: 1}  # rules matched so far -> weighted partial cells
    for axis in axes:
        classes: dict[int, int] = {}
        for row in axis.rows:
            mask = _mask(axis, row, rules)
            classes[mask] = classes.get(mask, 0) + weight(axis, row)
        folded: dict[int, int] = {}
        for state, count in states.items():
            for mask, total in classes.items():
                folded[state & mask] = folded.get(state & mask, 0) + count * total
        states = folded
    return states.get(0, 0)  # a cell with any bit left matches a rule in full
