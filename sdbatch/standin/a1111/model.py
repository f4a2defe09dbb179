"""The txt2img request model: the v1.10.1 field table and pydantic-v1-style lax coercion.

A1111 builds its request model with pydantic v1 (a1111-api.md §1), so the stand-in coerces the
same way: "20" -> 20, 20.7 -> 20, "yes" -> True, 7 -> 7.0; unknown keys are dropped; every error
is collected and answered as FastAPI's 422 `{"detail": [{loc, msg, type}, ...]}`.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Mapping
from typing import Any

from sdbatch.standin.a1111 import pydantic2
from sdbatch.standin.a1111.errors import ApiError, http_exception
from sdbatch.standin.a1111.fields import FIELDS, Coercion, Field, by_kind

# pydantic v1's BOOL_TRUE / BOOL_FALSE sets; 1.0 matches 1 through ==, as it does there.
_TRUE: frozenset[Any] = frozenset({1, "1", "on", "t", "true", "y", "yes"})
_FALSE: frozenset[Any] = frozenset({0, "0", "off", "f", "false", "n", "no"})
_MAX_STR_INT = 4300  # pydantic refuses longer digit strings (the CPython int DoS guard)


class _Invalid(Exception):
    def __init__(self, msg: str, type_: str, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(msg)
        self.msg, self.type_, self.loc = msg, type_, loc


def _int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and len(v) > _MAX_STR_INT:
        raise _Invalid("value is not a valid integer", "type_error.integer")
    try:
        return int(v)  # truncates floats and accepts bools, as pydantic v1 does
    except (TypeError, ValueError, OverflowError):
        raise _Invalid("value is not a valid integer", "type_error.integer") from None


def _float(v: Any) -> float:
    if isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        raise _Invalid("value is not a valid float", "type_error.float") from None


def _bool(v: Any) -> bool:
    if v is True or v is False:
        return bool(v)
    if isinstance(v, str):
        v = v.lower()
    try:
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    except TypeError:  # unhashable (a list or dict)
        pass
    raise _Invalid("value could not be parsed to a boolean", "type_error.bool")


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):  # bools too: True -> "True", like pydantic v1
        return str(v)
    raise _Invalid("str type expected", "type_error.str")


def _list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    raise _Invalid("value is not a valid list", "type_error.list")


def _str_list(v: Any) -> list[str]:
    items = _list(v)
    out: list[str] = []
    for i, item in enumerate(items):
        try:
            out.append(_str(item))
        except _Invalid as exc:
            raise _Invalid(exc.msg, exc.type_, (i,)) from None
    return out


def _dict(v: Any) -> dict[Any, Any]:
    if isinstance(v, dict):
        return v
    try:
        return dict(v)  # pydantic v1 also turns a list of pairs into a dict
    except (TypeError, ValueError):
        raise _Invalid("value is not a valid dict", "type_error.dict") from None


# pydantic v1 coercion per field kind; pydantic2.py has the v2 (Forge, SD.Next) counterparts.
COERCE: Mapping[str, Callable[[Any], Any]] = by_kind(
    _int, _float, _bool, _str, _str_list, _list, _dict
)


def _error(loc: tuple[Any, ...], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": type_, **extra}


def _null_item(f: Field) -> dict[str, Any]:
    # v1 says the same for every kind; v2 answers with the kind's type error instead.
    return _error((f.name,), "none is not an allowed value", "type_error.none.not_allowed")


def _invalid_item(f: Field, value: Any, exc: _Invalid) -> dict[str, Any]:
    # v1 items carry no `input`, so the value itself is not needed here.
    return _error((f.name, *exc.loc), exc.msg, exc.type_)


_V1: Coercion[_Invalid] = Coercion(COERCE, _Invalid, _null_item, _invalid_item)


def decode_body(raw: bytes, content_type: str | None, v2: bool = False) -> Any:
    """The body as FastAPI hands it to validation: JSON, raw bytes, or None when empty.

    Runs before auth is checked, because FastAPI parses the body before resolving dependencies.
    """
    if not raw:
        return None
    if content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        is_json = message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        )
        if not is_json:
            return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        if v2:
            raise ApiError(422, {"detail": [pydantic2.json_error(exc)]}) from None
        ctx = {
            "msg": exc.msg,
            "doc": exc.doc,
            "pos": exc.pos,
            "lineno": exc.lineno,
            "colno": exc.colno,
        }
        raise ApiError(
            422, {"detail": [_error((exc.pos,), str(exc), "value_error.jsondecode", ctx=ctx)]}
        ) from None
    except UnicodeDecodeError as exc:  # FastAPI's catch-all, rendered by the webui's handler
        raise http_exception(400, "There was an error parsing the body") from exc


def validate(body: Any, fields: tuple[Field, ...] = FIELDS, v2: bool = False) -> dict[str, Any]:
    """The validated request, every field present, in model order; or a 422 in the pydantic
    v1 (A1111) or v2 (Forge, SD.Next) error format."""
    if body is None:
        if v2:
            raise ApiError(422, {"detail": [pydantic2.error((), "missing", None)]})
        raise ApiError(422, {"detail": [_error((), "field required", "value_error.missing")]})
    if v2:
        if not isinstance(body, dict):
            raise ApiError(422, {"detail": [pydantic2.error((), "model_attributes_type", body)]})
        return pydantic2.validate(body, fields)
    try:
        data = _dict(body)
    except _Invalid as exc:
        raise ApiError(422, {"detail": [_error((), exc.msg, exc.type_)]}) from None
    return _V1.validate(data, fields)
