"""One input's checks in POST /prompt, with the real 0.3.64's reason bodies
(tests/data/real-comfyui): a literal converted as the input's type says (`int()`, `float()`,
`str()`, `bool()`: "20" is a fine INT, "64.5" is not) and held to min/max, a combo value held to
its list, a link held to `[node id, slot]` and to the linked output's type, and LoadImage's own
check that its file exists. The converted value is what the graph keeps: the real server writes
it back, so history and the PNG's `prompt` show `"steps": 1` for a posted `"1"` (recorded).
"""

from __future__ import annotations

import math
from typing import Any

Reason = dict[str, Any]
CONVERT = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
# Inputs a node checks itself (its VALIDATE_INPUTS), instead of against the combo list.
CUSTOM = {("LoadImage", "image")}


def reason(kind: str, message: str, details: str, extra: dict[str, Any]) -> Reason:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def literal(name: str, value: Any, config: list[Any]) -> tuple[Reason | None, Any]:
    """(what is wrong with a literal value or None, the value as converted)."""
    reason = value_reason(name, value, config)
    kind = config[0]
    if reason is None and isinstance(kind, str) and kind in CONVERT:
        return None, CONVERT[kind](value)
    return reason, value


def value_reason(name: str, value: Any, config: list[Any]) -> Reason | None:
    """What is wrong with a literal input value, None when it is acceptable."""
    kind, options = config[0], (config[1] if len(config) > 1 else {})
    extra: dict[str, Any] = {"input_name": name, "input_config": config, "received_value": value}
    if isinstance(kind, list):
        if _hashable(value) and value in kind:
            return None
        listed = f"(list of length {len(kind)})" if len(kind) > 20 else str(kind)
        if len(kind) > 20:
            extra["input_config"] = None
        return reason(
            "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}", extra
        )
    if kind not in CONVERT:
        return None  # a socket type given a literal: the node would get it as it is
    try:
        value = CONVERT[kind](value)
        if kind == "FLOAT" and math.isnan(value):
            raise ValueError("NaN is not allowed")
    except (TypeError, ValueError, OverflowError) as exc:
        extra["exception_message"] = str(exc)
        return reason(
            "invalid_input_type",
            f"Failed to convert an input value to a {kind} value",
            f"{name}, {extra['received_value']}, {exc}",
            extra,
        )
    extra["received_value"] = value
    if "min" in options and value < options["min"]:
        return reason(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {options['min']}",
            name,
            extra,
        )
    if "max" in options and value > options["max"]:
        return reason(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {options['max']}",
            name,
            extra,
        )
    return None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def link_reason(
    name: str, value: list[Any], config: list[Any], outputs: list[str]
) -> Reason | None:
    """A link that is not [node id, slot], or whose output type is not the input's."""
    extra: dict[str, Any] = {"input_name": name, "input_config": config}
    if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool):
        message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
        return reason("bad_linked_input", message, name, {**extra, "received_value": value})
    wanted = config[0]
    received = outputs[value[1]] if 0 <= value[1] < len(outputs) else None
    if isinstance(wanted, str) and wanted != "*" and received != wanted:
        return reason(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{name}, received_type({received}) mismatch input_type({wanted})",
            {**extra, "received_type": received, "linked_node": value},
        )
    return None


def custom_reason(class_type: str, name: str, value: Any, files: list[str]) -> Reason | None:
    """LoadImage's own check: the file must be in the input folder."""
    if value in files:
        return None
    return reason(
        "custom_validation_failed",
        "Custom validation failed for node",
        f"{name} - Invalid image file: {value}",
        {"input_name": name},
    )
