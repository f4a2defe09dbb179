"""pydantic v2 (lax mode) coercion and FastAPI's v2 422 items, for Forge and SD.Next.

v2 is stricter than v1 (a1111-api.md §1, §8): 20.7 is no longer truncated to an int, numbers
are not turned into strings; items are `{"type", "loc", "msg", "input"}` (FastAPI asks pydantic
for errors without the documentation `url`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sdbatch.standin.a1111.fields import Coercion, Field, by_kind

MESSAGES = {
    "missing": "Field required",
    "model_attributes_type": "Input should be a valid dictionary or object to extract fields from",
    "int_type": "Input should be a valid integer",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "float_type": "Input should be a valid number",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "bool_type": "Input should be a valid boolean",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
    "string_type": "Input should be a valid string",
    "list_type": "Input should be a valid list",
    "dict_type": "Input should be a valid dictionary",
}
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class _Invalid(Exception):
    def __init__(self, type_: str, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(type_)
        self.type_, self.loc = type_, loc


def error(loc: tuple[Any, ...], type_: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "loc": ["body", *loc], "msg": MESSAGES[type_], "input": value, **extra}


def json_error(exc: json.JSONDecodeError) -> dict[str, Any]:
    return {
        "type": "json_invalid",
        "loc": ["body", exc.pos],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": exc.msg},
    }


def _int(v: Any) -> int:
    if isinstance(v, bool | int):
        return int(v)
    if isinstance(v, float):
        if v != int(v):
            raise _Invalid("int_from_float")
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise _Invalid("int_parsing") from None
    raise _Invalid("int_type")


def _float(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise _Invalid("float_parsing") from None
    raise _Invalid("float_type")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise _Invalid("bool_parsing" if isinstance(v, str | int | float) else "bool_type")


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise _Invalid("string_type")


def _list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    raise _Invalid("list_type")


def _str_list(v: Any) -> list[str]:
    for i, item in enumerate(_list(v)):
        if not isinstance(item, str):
            raise _Invalid("string_type", (i,))
    return list(v)


def _dict(v: Any) -> dict[Any, Any]:
    if isinstance(v, dict):
        return v
    raise _Invalid("dict_type")


COERCE: Mapping[str, Callable[[Any], Any]] = by_kind(
    _int, _float, _bool, _str, _str_list, _list, _dict
)
# What a non-nullable field says about null: the type error of its kind (a str_list is a list).
_NULL: Mapping[str, str] = by_kind(
    "int_type", "float_type", "bool_type", "string_type", "list_type", "list_type", "dict_type"
)


def _null_item(f: Field) -> dict[str, Any]:
    return error((f.name,), _NULL[f.kind], None)


def _invalid_item(f: Field, value: Any, exc: _Invalid) -> dict[str, Any]:
    # v2 echoes the offending `input`: for a bad list item, that item rather than the list.
    bad = value[exc.loc[0]] if exc.loc else value
    return error((f.name, *exc.loc), exc.type_, bad)


_V2: Coercion[_Invalid] = Coercion(COERCE, _Invalid, _null_item, _invalid_item)


def validate(data: Mapping[str, Any], fields: tuple[Field, ...]) -> dict[str, Any]:
    return _V2.validate(data, fields)
