"""Prompt templates: `{name}` placeholders filled from `vars:`, and `{a|b|c}` variants.

Entry point: `parse_template(text) -> Template`, raising `TemplateError` for an unbalanced or
nested brace. `{{` and `}}` are a literal `{` and `}`. A group with a `|` is a variant; one
without is a placeholder and must be a plain identifier. Variants do not nest, and a variant's
options are literal text (no placeholders inside), which keeps a template's expansion a plain
product that `plan` can count without expanding it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Besides `prompt`, the payload strings filled in, when set in defaults or a prompt mapping
# (grid and zip values are literal text). Variant groups are numbered across them in this order.
TEMPLATE_FIELDS = ("negative_prompt", "hr_prompt", "hr_negative_prompt")


class TemplateError(ValueError):
    """A template that cannot be parsed; `offset` is the index in the text of the culprit."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Placeholder:
    name: str
    offset: int = field(default=0, compare=False)  # where `{` is, for messages


@dataclass(frozen=True)
class Variant:
    options: tuple[str, ...]


Part = str | Placeholder | Variant


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[Part, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Placeholder names in order of first use."""
        return tuple(dict.fromkeys(p.name for p in self.parts if isinstance(p, Placeholder)))

    @property
    def placeholders(self) -> tuple[tuple[str, int], ...]:
        """(name, offset of its `{`) of every placeholder, for messages."""
        return tuple((p.name, p.offset) for p in self.parts if isinstance(p, Placeholder))

    @property
    def variants(self) -> tuple[tuple[str, ...], ...]:
        """The options of each `{a|b}` group, left to right."""
        return tuple(p.options for p in self.parts if isinstance(p, Variant))

    @property
    def is_plain(self) -> bool:
        """No placeholders and no variants (escaped braces may still have been unescaped)."""
        return all(isinstance(p, str) for p in self.parts)

    def render(self, values: Mapping[str, object], choices: Sequence[str] = ()) -> str:
        """The text with each placeholder replaced from `values` and each variant group by
        the matching entry of `choices` (one per group, in order)."""
        picks: Iterator[str] = iter(choices)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Placeholder):
                out.append(str(values[part.name]))
            elif isinstance(part, Variant):
                out.append(next(picks))
            else:
                out.append(part)
        return "".join(out)


def draw(groups: Sequence[Sequence[str]], rng: random.Random) -> tuple[str, ...]:
    """One random option per variant group, from an injected generator (reproducible)."""
    return tuple(rng.choice(list(options)) for options in groups)


def parse_template(text: str) -> Template:
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith(("{{", "}}"), i):
            literal.append(char)
            i += 2
        elif char == "}":
            raise TemplateError("unbalanced '}' (write '}}' for a literal brace)", i)
        elif char == "{":
            end = _closing(text, i)
            body = text[i + 1 : end]
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_group(body, i))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def _closing(text: str, start: int) -> int:
    for j in range(start + 1, len(text)):
        if text[j] == "{":
            raise TemplateError("nested '{' inside a {...} group is not supported", j)
        if text[j] == "}":
            return j
    raise TemplateError("unbalanced '{' (write '{{' for a literal brace)", start)


def _group(body: str, offset: int) -> Part:
    if "|" in body:
        return Variant(tuple(body.split("|")))
    name = body.strip()
    if not _IDENTIFIER.fullmatch(name):
        raise TemplateError(
            f"{{{body}}} is neither a {{variable}} nor a {{a|b}} variant "
            "(write '{{' and '}}' for literal braces)",
            offset,
        )
    return Placeholder(name, offset)


@dataclass(frozen=True)
class PromptTemplates:
    """The templates of one prompt's payload: `prompt` first, then TEMPLATE_FIELDS."""

    fields: tuple[tuple[str, Template], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for _, t in self.fields for n in t.names))

    @property
    def variants(self) -> tuple[tuple[str, ...], ...]:
        return tuple(options for _, t in self.fields for options in t.variants)

    @property
    def is_plain(self) -> bool:
        return all(t.is_plain for _, t in self.fields)

    def render(self, values: Mapping[str, object], choices: Sequence[str]) -> dict[str, str]:
        """Each field's final text; `choices` holds one option per group across all fields."""
        out: dict[str, str] = {}
        start = 0
        for name, template in self.fields:
            end = start + len(template.variants)
            out[name] = template.render(values, choices[start:end])
            start = end
        return out


def prompt_templates(prompt: str, fields: Mapping[str, object]) -> PromptTemplates:
    """The templates of a payload whose prompt is `prompt` and whose other fields (defaults
    overlaid by the prompt's own) are `fields`; every text must parse (the loader checked)."""
    texts = [("prompt", prompt)]
    texts += [(n, v) for n in TEMPLATE_FIELDS if isinstance(v := fields.get(n), str)]
    return PromptTemplates(tuple((n, parse_template(t)) for n, t in texts))
