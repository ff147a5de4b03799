"""docs/configuration.md's key table says what the schema says: every key, its default, the values
it allows and its meaning, so the page cannot drift from ``edge.config_schema``."""

import json
import re
import typing

import annotated_types

from edge.config import PACKAGE_ROOT, Config, Section
from edge.config_schema import TOPIC_SAFE, TOPIC_TEXT

DOC = PACKAGE_ROOT / "docs" / "configuration.md"
PATTERN_WORDS = {TOPIC_SAFE: "ASCII letters, digits, - and _", TOPIC_TEXT: "no # or +, no control characters"}


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(metadata) -> str:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = ("≥", item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = (">", item.gt)
        elif isinstance(item, annotated_types.Le):
            high = ("≤", item.le)
        elif isinstance(item, annotated_types.Lt):
            high = ("<", item.lt)
    if low and high and low[0] == "≥" and high[0] == "≤":
        return f"{_number(low[1])}–{_number(high[1])}"
    return ", ".join(f"{bound[0]} {_number(bound[1])}" for bound in (low, high) if bound)


def _shown_default(value) -> str:
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown_default(item) for item in value) + "]"
    return str(value)


def _allowed(field) -> str:
    """What the schema accepts for one key, in the table's words."""
    annotation, args = field.annotation, typing.get_args(field.annotation)
    optional = type(None) in args
    choices = [arg for arg in args if arg is not type(None)]
    min_items = next((item.min_length for item in field.metadata if isinstance(item, annotated_types.MinLen)), 0)
    parts = []
    if typing.get_origin(annotation) is typing.Literal:
        parts.append(", ".join(map(str, args)))
    elif optional and len(choices) == 1 and typing.get_origin(choices[0]) is typing.Literal:
        parts.append(", ".join(typing.get_args(choices[0])))
    elif typing.get_origin(annotation) is tuple and typing.get_origin(args[0]) is typing.Annotated:
        parts.append("each " + _bounds(typing.get_args(args[0])[1].metadata))
    elif typing.get_origin(annotation) is list and typing.get_origin(args[0]) is typing.Literal:
        parts.append(f"{min_items} or more of " + ", ".join(typing.get_args(args[0])))
    elif annotation is bool:
        parts.append("true, false")
    elif annotation is str and min_items:
        parts.append("not empty")
    if bounds := _bounds(field.metadata):
        parts.append(bounds)
    parts += [PATTERN_WORDS.get(item.pattern, f"`{item.pattern}`")
              for item in field.metadata if getattr(item, "pattern", None)]
    parts += [f"at most {item.max_length} characters" for item in field.metadata
              if isinstance(item, annotated_types.MaxLen)]
    if not parts:
        return _type_words(annotation)
    return "; ".join(parts) + (" or empty" if optional else "")


def _type_words(annotation) -> str:
    words = {int: "integer", float: "number", str: "text", type(None): "empty"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return f"map of {_type_words(args[0])} to {_type_words(args[1])}"
    if origin is list:
        return f"list of {_type_words(args[0])}"
    if origin is tuple:
        return f"{len(args)} × {_type_words(args[0])}"
    if args:  # a union
        return " or ".join(_type_words(arg) for arg in args)
    return words[annotation]


def _schema_rows(model=Config, prefix=""):
    for name, field in model.model_fields.items():
        if name == "source_path":
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Section):
            yield from _schema_rows(type(default), f"{prefix}{name}.")
        else:
            yield f"| `{prefix}{name}` | `{_shown_default(default)}` | {_allowed(field)} | {field.description} |"


def test_the_key_table_lists_every_key_with_its_default_allowed_values_and_meaning():
    doc_rows = [line for line in DOC.read_text().splitlines() if re.match(r"^\| `[a-z_.]+` \|", line)]
    assert doc_rows == list(_schema_rows())


def test_a_bound_reads_as_a_range_or_a_comparison():
    ge, gt, le = annotated_types.Ge(1), annotated_types.Gt(0), annotated_types.Le(120)
    assert _bounds([ge, annotated_types.Le(16)]) == "1–16"
    assert _bounds([gt, le]) == "> 0, ≤ 120"
    assert _bounds([ge]) == "≥ 1"
    assert _bounds([]) == ""
