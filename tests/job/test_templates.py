"""Prompt templates: placeholders, variants, escapes and the errors of broken braces."""

from __future__ import annotations

import random

import pytest

from sdbatch.job.templates import (
    Placeholder,
    TemplateError,
    Variant,
    draw,
    parse_template,
    prompt_templates,
)


def test_parts_names_and_variants() -> None:
    template = parse_template("a {animal} {red|blue} on a {surface}, {animal}")
    assert template.parts == (
        "a ",
        Placeholder("animal"),
        " ",
        Variant(("red", "blue")),
        " on a ",
        Placeholder("surface"),
        ", ",
        Placeholder("animal"),
    )
    assert template.names == ("animal", "surface")
    assert template.placeholders == (("animal", 2), ("surface", 27), ("animal", 38))
    assert template.variants == (("red", "blue"),)
    assert template.render({"animal": "cat", "surface": "rug"}, ["blue"]) == (
        "a cat blue on a rug, cat"
    )


def test_escapes_and_plain_text() -> None:
    template = parse_template('json {{"a": 1}} and {x}')
    assert template.render({"x": 2}) == 'json {"a": 1} and 2'
    plain = parse_template("a (cat:1.2), [dog]")
    assert plain.is_plain and plain.render({}) == "a (cat:1.2), [dog]"
    assert parse_template("{{x}}").is_plain


def test_empty_variant_options_are_kept() -> None:
    assert parse_template("a{| big} cat").variants == (("", " big"),)


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("a {cat", 2, "unbalanced '{'"),
        ("a cat}", 5, "unbalanced '}'"),
        ("a {b {c}}", 5, "nested '{'"),
        ("a {two words}", 2, "neither a {variable} nor a {a|b} variant"),
        ("a {}", 2, "neither"),
    ],
)
def test_errors(text: str, offset: int, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    assert info.value.offset == offset
    assert message in info.value.message


def test_variant_groups_are_numbered_across_fields() -> None:
    templates = prompt_templates(
        "a {red|blue} {animal}", {"negative_prompt": "{ugly|bad}", "steps": 20}
    )
    assert templates.names == ("animal",)
    assert templates.variants == (("red", "blue"), ("ugly", "bad"))
    assert templates.render({"animal": "cat"}, ("blue", "bad")) == {
        "prompt": "a blue cat",
        "negative_prompt": "bad",
    }


def test_draw_uses_the_injected_generator() -> None:
    groups = (("a", "b", "c"), ("x", "y"))
    expected = random.Random(5)
    assert draw(groups, random.Random(5)) == (
        expected.choice(["a", "b", "c"]),
        expected.choice(["x", "y"]),
    )
