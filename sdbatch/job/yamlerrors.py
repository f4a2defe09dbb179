"""YAML mistakes turned into `Problem`s a new user can act on.

Entry points: `yaml_problem(exc, file, text) -> Problem` for a file YAML cannot parse, and
`prompt_mapping_problems(data, positions) -> list[Problem]` for the one mistake YAML parses
fine: an unquoted prompt containing `: `, which becomes a mapping.

PyYAML's own words are kept, with the fix added where the cause is known:

- a tab where YAML wants indentation: "use spaces, not tabs", at the tab;
- an unclosed quote: reported where the string opens, not at the end of the file where PyYAML
  notices it;
- `: ` inside an unquoted value ("mapping values are not allowed here"): quote the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from sdbatch.errors import Problem
from sdbatch.job.safeload import LimitError
from sdbatch.job.schema import SHORTCUTS, Positions, txt2img_fields

QUOTED = "while scanning a quoted scalar"
TABS = "a tab: YAML indents with spaces, not tabs; use spaces"
COLON = "a ': ' inside an unquoted value reads as a new key; put this text in quotes"


def yaml_problem(exc: yaml.YAMLError, file: str, text: str) -> Problem:
    line = col = 0
    detail = str(exc)
    if isinstance(exc, LimitError) and exc.problem_mark is not None:
        at = exc.problem_mark
        return Problem(file, at.line + 1, at.column + 1, "$", str(exc.problem))
    if isinstance(exc, yaml.MarkedYAMLError):
        if exc.context == QUOTED and exc.context_mark is not None:
            # PyYAML notices the missing quote where the file (or the document) ends.
            opening = exc.context_mark
            detail = "this quoted string is never closed: add the closing quote"
            return Problem(
                file, opening.line + 1, opening.column + 1, "$", f"invalid YAML: {detail}"
            )
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            line, col = mark.line + 1, mark.column + 1
        detail = exc.problem or exc.context or detail
        tab = _tab_at(text, mark.line, mark.column) if mark is not None else None
        if tab is not None:
            return Problem(file, line, tab + 1, "$", f"invalid YAML: {detail} ({TABS})")
        if detail == "mapping values are not allowed here":
            return Problem(file, line, col, "$", f"invalid YAML: {detail} ({COLON})")
        if exc.problem and exc.context and exc.context_mark is not None:
            detail += f" ({exc.context} at line {exc.context_mark.line + 1})"
    elif isinstance(exc, yaml.reader.ReaderError):  # a control character, say
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        detail = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    return Problem(file, line, col, "$", f"invalid YAML: {detail}")


def _tab_at(text: str, line: int, column: int) -> int | None:
    """The column (0-based) of a tab that explains an error at (line, column): the character
    there, or one in the indentation of that line."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return None
    row = lines[line]
    if row[column : column + 1] == "\t":
        return column
    indent = row[: len(row) - len(row.lstrip(" \t"))]
    return indent.index("\t") if "\t" in indent else None


def prompt_mapping_problems(data: Mapping[str, Any], positions: Positions) -> list[Problem]:
    """`- a cat: photo` is a mapping {"a cat": "photo"} to YAML: a prompt item that is a mapping
    without `prompt:` and with a key no txt2img field has is such a prompt, not a typo'd field."""
    problems = []
    items = data.get("prompts")
    known = {*txt2img_fields(), *SHORTCUTS, "prompt"}
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict) or "prompt" in item:
            continue
        strange = [k for k in item if not isinstance(k, str) or k not in known]
        node = positions.node(("prompts", i))
        if strange and isinstance(node, yaml.MappingNode) and not _braced(node):
            key = strange[0]
            message = (
                f"YAML read this prompt as a mapping ({key}: ...) because it contains ': '; "
                "put this prompt in quotes"
            )
            problems.append(positions.problem(("prompts", i), message))
    return problems


def _braced(node: yaml.Node) -> bool:
    """`{a: b}` written with its braces is a mapping on purpose."""
    buffer, start = node.start_mark.buffer, node.start_mark.pointer
    return isinstance(buffer, str) and buffer[start : start + 1] == "{"
