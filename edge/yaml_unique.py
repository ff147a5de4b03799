"""YAML that refuses a key given twice in one mapping, for every settings file smartbin reads.

PyYAML keeps only the last of two equal keys, silently: two ``mqtt:`` sections in a bin's config
would merge into the last one (dropping, say, its TLS settings), two ``plastic_bottle:`` lines in
a training label map would keep only one target. Merge keys (``<<: *defaults``) still work.

Usage:
    from edge.yaml_unique import DuplicateKeyError, load_unique
    data = load_unique(Path("smartbin.yaml").read_text(encoding="utf-8"))
"""

from __future__ import annotations

import functools
from typing import Any


class DuplicateKeyError(ValueError):
    """A key appears twice in one YAML mapping (``line`` and ``first`` are 1-based)."""

    def __init__(self, key: str, line: int, first: int, column: int = 0):
        super().__init__(f"{key}: line {line}: appears again (first on line {first})")
        self.key, self.line, self.first, self.column = key, line, first, column
        self.path = key  # dotted from the top (``mqtt.tls.enabled``), once ``load_unique`` has found it


def syntax_error_text(err: Exception) -> str:
    """One line for a YAML error: ``YAML syntax error at line 3, column 8: expected ',' or ']'``
    (PyYAML's own message spans five lines with a caret drawing, which a one-line error cannot carry).

    Usage:
        except yaml.YAMLError as err: print(f"{path}: {syntax_error_text(err)}")
    """
    mark = getattr(err, "problem_mark", None)
    reason = getattr(err, "problem", None) or next((line for line in str(err).splitlines() if line.strip()),
                                                   type(err).__name__)
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {reason}" if mark \
        else f"YAML: {reason}"


def load_unique(text: str) -> Any:
    """Parses YAML like ``yaml.safe_load``, except that a repeated key raises ``DuplicateKeyError``.

    Raises:
        DuplicateKeyError: a key given twice in one mapping.
        yaml.YAMLError: a syntax error (also nesting too deep for the parser, a number too long to read).
    """
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 -- a SafeLoader subclass
    except DuplicateKeyError as err:
        err.path = _dotted_path(yaml.compose(text, Loader=yaml.SafeLoader), err) or err.key
        raise
    # Read as syntax errors, so every caller's one-line error (and exit 2) covers them too.
    except RecursionError:  # thousands of nested "[": PyYAML's parser recurses per level
        raise yaml.YAMLError("nested too deeply to read") from None
    except ValueError as err:  # a 5000-digit number: beyond Python's integer conversion limit
        reason = "a number too long to read" if "digits" in str(err) else str(err).splitlines()[0]
        raise yaml.YAMLError(reason) from None


def _dotted_path(root, err: DuplicateKeyError) -> str | None:
    """Where the repeated key sits: the mapping keys (and list indexes) leading to it from the top."""
    import yaml

    stack, seen = [(root, [])], set()
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen:  # an alias met again (YAML may even nest one in itself)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                mark = key_node.start_mark
                if (mark.line + 1, mark.column, str(key_node.value)) == (err.line, err.column, err.key):
                    return ".".join([*path, err.key])
                stack.append((value_node, [*path, str(key_node.value)]))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, [*path, str(index)]) for index, item in enumerate(node.value)]
    return None


@functools.cache
def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            first_seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults": merged by SafeLoader itself, and may repeat
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)):
                    if key in first_seen:
                        raise DuplicateKeyError(str(key), line, first_seen[key], key_node.start_mark.column)
                    first_seen[key] = line
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader
