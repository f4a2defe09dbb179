"""The txt2img request model: the v1.10.1 field table and pydantic-v1-style lax coercion.

A1111 builds its request model with pydantic v1 (a1111-api.md §1), so the stand-in coerces the
same way: "20" -> 20, 20.7 -> 20, "yes" -> True, 7 -> 7.0; unknown keys are dropped; every error
is collected and answered as FastAPI's 422 `{"detail": [{loc, msg, type}, ...]}`.
"""

from __future__ import annotations

import copy
import email.message
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdbatch.mockwebui.errors import ApiError, http_exception

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


@dataclass(frozen=True)
class Field:
    name: str
    coerce: Callable[[Any], Any]
    default: Any
    nullable: bool = True  # dataclass-derived fields are Optional[...]


def _f(name: str, coerce: Callable[[Any], Any], default: Any, nullable: bool = True) -> Field:
    return Field(name, coerce, default, nullable)


# Model order of StableDiffusionTxt2ImgProcessingAPI at v1.10.1 (a1111-api.md §1); `parameters`
# in the response echoes the request in this order.
FIELDS: tuple[Field, ...] = (
    _f("prompt", _str, ""),
    _f("negative_prompt", _str, ""),
    _f("styles", _str_list, None),
    _f("seed", _int, -1),
    _f("subseed", _int, -1),
    _f("subseed_strength", _float, 0),
    _f("seed_resize_from_h", _int, -1),
    _f("seed_resize_from_w", _int, -1),
    _f("sampler_name", _str, None),
    _f("scheduler", _str, None),
    _f("batch_size", _int, 1),
    _f("n_iter", _int, 1),
    _f("steps", _int, 50),
    _f("cfg_scale", _float, 7.0),
    _f("width", _int, 512),
    _f("height", _int, 512),
    _f("restore_faces", _bool, None),
    _f("tiling", _bool, None),
    _f("do_not_save_samples", _bool, False),
    _f("do_not_save_grid", _bool, False),
    _f("eta", _float, None),
    _f("denoising_strength", _float, None),
    _f("s_min_uncond", _float, None),
    _f("s_churn", _float, None),
    _f("s_tmax", _float, None),
    _f("s_tmin", _float, None),
    _f("s_noise", _float, None),
    _f("override_settings", _dict, None),
    _f("override_settings_restore_afterwards", _bool, True),
    _f("refiner_checkpoint", _str, None),
    _f("refiner_switch_at", _float, None),
    _f("disable_extra_networks", _bool, False),
    _f("firstpass_image", _str, None),
    _f("comments", _dict, None),
    _f("enable_hr", _bool, False),
    _f("firstphase_width", _int, 0),
    _f("firstphase_height", _int, 0),
    _f("hr_scale", _float, 2.0),
    _f("hr_upscaler", _str, None),
    _f("hr_second_pass_steps", _int, 0),
    _f("hr_resize_x", _int, 0),
    _f("hr_resize_y", _int, 0),
    _f("hr_checkpoint_name", _str, None),
    _f("hr_sampler_name", _str, None),
    _f("hr_scheduler", _str, None),
    _f("hr_prompt", _str, ""),
    _f("hr_negative_prompt", _str, ""),
    _f("force_task_id", _str, None),
    # API-only additions: the ones with a non-None default reject null.
    _f("sampler_index", _str, "Euler", nullable=False),
    _f("script_name", _str, None),
    _f("script_args", _list, [], nullable=False),
    _f("send_images", _bool, True, nullable=False),
    _f("save_images", _bool, False, nullable=False),
    _f("alwayson_scripts", _dict, {}, nullable=False),
    _f("infotext", _str, None),
)


def _error(loc: tuple[Any, ...], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": type_, **extra}


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI 0.94 hands it to validation: JSON, raw bytes, or None when empty.

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
    except UnicodeDecodeError as exc:  # FastAPI's catch-all, rendered by A1111's handler
        raise http_exception(400, "There was an error parsing the body") from exc


def validate(body: Any) -> dict[str, Any]:
    """The validated request, every field present, in model order; or a 422."""
    if body is None:
        raise ApiError(422, {"detail": [_error((), "field required", "value_error.missing")]})
    try:
        data = _dict(body)
    except _Invalid as exc:
        raise ApiError(422, {"detail": [_error((), exc.msg, exc.type_)]}) from None
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for f in FIELDS:
        if f.name not in data:
            values[f.name] = copy.deepcopy(f.default)
            continue
        value = data[f.name]
        if value is None:
            if f.nullable:
                values[f.name] = None
            else:
                errors.append(
                    _error((f.name,), "none is not an allowed value", "type_error.none.not_allowed")
                )
            continue
        try:
            values[f.name] = f.coerce(value)
        except _Invalid as exc:
            errors.append(_error((f.name, *exc.loc), exc.msg, exc.type_))
    if errors:
        raise ApiError(422, {"detail": errors})
    return values
