"""Read the webui's "parameters" text (the infotext) back into its `Key: value` pairs.

Entry point: `parse_infotext(text) -> dict[str, str]`. The format is `create_infotext`'s:
the prompt (possibly several lines), an optional `Negative prompt: ...` line, then one line of
`Key: value` pairs joined by ", ". A value holding `,`, `:` or a newline is JSON-quoted
(`infotext_utils.quote`), so it is unquoted here. The pattern is A1111's own `re_param`.
"""

from __future__ import annotations

import json
import re

# infotext_utils.re_param_code: a key starting with a word character, then a JSON-quoted
# string (escapes allowed) or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_MIN_PARAMS = 3  # parse_generation_parameters' test for "this last line is the parameters"


def parse_infotext(text: str | None) -> dict[str, str]:
    """The parameters of the last line (empty when it has none), plus "Prompt" and
    "Negative prompt" from the lines before it."""
    if not text:
        return {}
    *lines, last = text.strip().split("\n")
    params = _PARAM.findall(last)
    if len(params) < _MIN_PARAMS:
        lines.append(last)
        params = []
    result: dict[str, str] = {}
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in lines:
        if line.startswith("Negative prompt:"):
            negative = [line[len("Negative prompt:") :].strip()]
        elif negative is not None:
            negative.append(line)
        else:
            prompt.append(line)
    result["Prompt"] = "\n".join(prompt)
    if negative is not None:
        result["Negative prompt"] = "\n".join(negative)
    for key, value in params:
        result[key.strip()] = _unquote(value.strip())
    return result


def _unquote(value: str) -> str:
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value
    try:
        unquoted = json.loads(value)
    except ValueError:
        return value
    return unquoted if isinstance(unquoted, str) else value
