"""Range forms of an axis: exact lists for each syntax, and the errors of empty ones."""

from __future__ import annotations

from typing import Any

import pytest

from sdbatch.job.axes import RangeError, expand_axis


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        ({"range": [10, 50, 10]}, "integer", [10, 20, 30, 40, 50]),
        ({"range": [10, 45, 10]}, "integer", [10, 20, 30, 40]),  # stop only if landed on
        ({"range": [50, 10, -20]}, "integer", [50, 30, 10]),  # a negative step counts down
        ({"range": [5, 5, 1]}, "integer", [5]),
        ({"range": [10.0, 30, 10]}, "integer", [10, 20, 30]),  # whole floats become ints
        ({"range": [1.0, 2.0, 0.25]}, "number", [1.0, 1.25, 1.5, 1.75, 2.0]),
        ({"range": [0.1, 0.5, 0.2]}, "number", [0.1, 0.3, 0.5]),  # decimal, not 0.30000000000000004
        ({"range": [3, 9, 2]}, "number", [3, 5, 7, 9]),  # ints stay ints
        ({"linspace": [3, 12, 4]}, "number", [3.0, 6.0, 9.0, 12.0]),
        ({"linspace": [0, 1, 4]}, "number", [0.0, 0.333333, 0.666667, 1.0]),
        ({"linspace": [7, 99, 1]}, "number", [7.0]),
        ({"linspace": [10, 40, 4]}, "integer", [10, 20, 30, 40]),
        ("10-50 (+10)", "integer", [10, 20, 30, 40, 50]),
        ("10-50(10)", "integer", [10, 20, 30, 40, 50]),
        ("10-2 (-4)", "integer", [10, 6, 2]),
        ("1-5", "integer", [1, 2, 3, 4, 5]),
        ("-2--1", "integer", [-2, -1]),
        ("1, 2, 5", "integer", [1, 2, 5]),
        ("1-3, 10, 20-30 (+5)", "integer", [1, 2, 3, 10, 20, 25, 30]),
        ("1-10 [4]", "integer", [1, 4, 7, 10]),
        ("1-10 [5]", "integer", [1, 3, 5, 7, 10]),  # the webui's int() truncation
        ("1-2 (+0.25)", "number", [1.0, 1.25, 1.5, 1.75, 2.0]),  # a float step: floats
        ("0-1 [3]", "number", [0.0, 0.5, 1.0]),
        ("7.5", "number", [7.5]),
        ([5, {"range": [10, 20, 5]}, "30-40 (+10)"], "integer", [5, 10, 15, 20, 30, 40]),
        ([None, 7.5], "number", [None, 7.5]),
    ],
)
def test_expansions(spec: Any, kind: str, expected: list[Any]) -> None:
    got = list(expand_axis(spec, kind))
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


@pytest.mark.parametrize(
    ("spec", "kind", "path", "message"),
    [
        ({"range": [10, 50, 0]}, "integer", ("range",), "must not be 0"),
        ({"range": [50, 10, 10]}, "integer", ("range",), "empty range: step 10 counts up"),
        ({"range": [10, 50, -10]}, "integer", ("range",), "counts down"),
        ({"range": [1, 2, 0.5]}, "integer", ("range", 2), "step 0.5 is not a whole number"),
        ({"linspace": [1, 2, 3]}, "integer", ("linspace",), "1.5 is not a whole number"),
        ({"linspace": [1, 2, 0]}, "number", ("linspace",), "count of at least 1"),
        ("10-1", "integer", (), "empty range"),
        ("1.5-3", "integer", (), "1.5 is not a whole number"),
        ("ten", "integer", (), "'ten' is not of type 'integer' nor a range"),
        ("1, , 2", "integer", (), "an empty item in '1, , 2'"),
        ([1, "5-1"], "integer", (1,), "empty range"),
        ([1, {"range": [1, 5, 0]}], "integer", (1, "range"), "must not be 0"),
    ],
)
def test_errors(spec: Any, kind: str, path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(RangeError) as info:
        expand_axis(spec, kind)
    assert info.value.path == path
    assert message in info.value.message
