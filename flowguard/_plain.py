"""Error messages for people who don't read Python (issue 16, item 5).

PyYAML's and pydantic's own wording ("did not find expected '-' indicator", "Input should
be a valid tuple") describes the parser, not the file. This module turns the common cases
into what is wrong, where, and what to write instead. Both loaders (`_source`, `_loading`)
call it; the Diagnostic format (file:line:column, message, hint) stays the same.
"""

from __future__ import annotations

from typing import Any

DATE_EXAMPLE = "write a date as 2026-03-01 or a time as 2026-03-01T09:00:00Z"
TIME_EXAMPLE = "write a time as 2026-03-01T09:00:00Z (or with an offset, 2026-03-01T10:00:00+01:00)"

# ------------------------------------------------------------------------------- YAML


def first_indent_tab(text: str, last_line: int) -> tuple[int, int] | None:
    """1-based line and column of the first tab in a line's indentation, up to `last_line`
    (0-based, inclusive), or None."""
    for number, line in enumerate(text.split("\n")[: last_line + 1]):
        stripped = line.lstrip(" \t")
        indent = line[: len(line) - len(stripped)]
        if "\t" in indent:
            return number + 1, indent.index("\t") + 1
    return None


def _first_content_column(text: str, line: int) -> int:
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return 1
    row = lines[line]
    return len(row) - len(row.lstrip(" ")) + 1


def plain_yaml(problem: str, context: str | None, text: str | None, line: int, column: int,
               opened: tuple[int, int] | None) -> tuple[str, int, int, str | None]:
    """A YAML parser error as (message, 1-based line, 1-based column, hint).

    `line`/`column` are the parser's 0-based mark; `opened` the 0-based place where the
    enclosing mapping or list started, when the parser says."""
    at_line, at_column = line + 1, column + 1
    if text is not None:
        tab = first_indent_tab(text, line)
        if tab is not None or (0 <= line < len(text.split("\n"))
                               and text.split("\n")[line][column:column + 1] == "\t"):
            if tab is None:
                tab = (at_line, at_column)
            return (f"malformed YAML: a tab character at line {tab[0]}, column {tab[1]}: "
                    "indent with spaces (tabs are not allowed in YAML)",
                    tab[0], tab[1], None)
    started = (f" (it started at line {opened[0] + 1}, column {opened[1] + 1})"
               if opened is not None and opened[0] != line else "")
    key_column = _first_content_column(text, line) if text is not None else at_column
    if problem == "did not find expected '-' indicator":
        return ("malformed YAML: this line is not indented like the list items above it"
                + started, at_line, key_column,
                "start every item of a list with `- ` in the same column, and indent what "
                "belongs to an item further than its `-`")
    if problem == "did not find expected key":
        return ("malformed YAML: this line is not indented like the keys above it" + started,
                at_line, key_column,
                "write the keys of one mapping in the same column, each as `key: value`")
    if problem == "mapping values are not allowed in this context":
        return ("malformed YAML: unexpected `:` here: this line is indented more than the "
                "key above it, or a value contains `: `",
                at_line, key_column,
                "line it up with the keys above it, or put the value in quotes: "
                "`note: \"a: b\"`")
    if problem.startswith("did not find expected ',' or '}'"):
        return ("malformed YAML: a `{` is not closed" + started, at_line, at_column,
                "write `{key: value, key: value}` with a comma between entries and a closing `}`")
    if problem.startswith("did not find expected ',' or ']'"):
        return ("malformed YAML: a `[` is not closed" + started, at_line, at_column,
                "write `[a, b]` with a comma between items and a closing `]`")
    if problem == "found unexpected end of stream" and context and "quoted" in context:
        return ("malformed YAML: a quoted text is not closed" + started, at_line, at_column,
                "end it with the same quote it starts with")
    if problem == "found character that cannot start any token":
        return ("malformed YAML: a value cannot start with this character", at_line, at_column,
                "put the value in quotes: `\"@name\"`")
    if problem == "could not find expected ':'":
        return ("malformed YAML: a key without `:`" + started, at_line, at_column,
                "write `key: value`, with a space after the colon")
    if problem == "did not find expected node content":
        return ("malformed YAML: a value is missing here", at_line, at_column,
                "write a value, or `null` for none")
    if problem == "did not find expected comment or line break":
        return ("malformed YAML: `|` or `>` starts a block of text and must end its line",
                at_line, at_column, "put a value that starts with `|` or `>` in quotes")
    if problem == "block sequence entries are not allowed in this context":
        return ("malformed YAML: a `- ` list item where a value was expected", at_line,
                at_column, "start the list on the next line, indented under its key, or "
                "put the value in quotes")
    if problem.startswith("did not find expected alphabetic or numeric character"):
        return ("malformed YAML: a value cannot start with `*` or `&`", at_line, at_column,
                "put the value in quotes: `\"*name\"`")
    if problem == "found unexpected ':'":
        return ("malformed YAML: unexpected `:` in a value", at_line, at_column,
                "put the value in quotes: `note: \"a: b\"`")
    if problem.startswith("could not find expected directive name") or \
            problem.startswith("found unknown escape character"):
        return ("malformed YAML: a line cannot start with `%`" if "directive" in problem
                else "malformed YAML: an unknown `\\` escape in a double-quoted text",
                at_line, at_column, "put the value in quotes" if "directive" in problem
                else "write `\\\\` for a backslash, or use single quotes")
    # the rare rest: the place, and what usually causes it, not the parser's own words
    return ("malformed YAML: the text here cannot be read" + started, at_line, at_column,
            "check the indentation, the `: ` after each key, and put a value that starts "
            "with a special character (`% @ * & ! | > [ {`) in quotes")


# ---------------------------------------------------------------------------- pydantic

_DATE_TYPES = frozenset({"date_parsing", "date_type", "date_from_datetime_parsing",
                         "date_from_datetime_inexact", "datetime_parsing", "datetime_type",
                         "datetime_from_date_parsing", "datetime_object_invalid",
                         "date_future", "date_past", "datetime_future", "datetime_past"})

_PLAIN: dict[str, str] = {
    "string_type": "expected a text",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "is not written in the expected form",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list: write `[a, b]` or one `- item` per line",
    "tuple_type": "expected a list: write `[a, b]` or one `- item` per line",
    "set_type": "expected a list: write `[a, b]` or one `- item` per line",
    "frozen_set_type": "expected a list: write `[a, b]` or one `- item` per line",
    "dict_type": "expected a mapping: write `key: value` lines or `{key: value}`",
    "model_type": "expected a mapping: write `key: value` lines or `{key: value}`",
    "model_attributes_type": "expected a mapping: write `key: value` lines or `{key: value}`",
    "none_required": "must be empty (null)",
    "extra_forbidden": "unknown key: remove it or check its spelling",
    "missing": "required: this key must be given",
    "greater_than": "is too small",
    "greater_than_equal": "is too small",
    "less_than": "is too large",
    "less_than_equal": "is too large",
}


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plain_pydantic(error: Any) -> str:
    """One pydantic error (from `ValidationError.errors()`) in plain words, without the
    field name (the caller puts that in front)."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in _DATE_TYPES:
        return f"not a valid date or time: {DATE_EXAMPLE}"
    if kind == "timezone_aware":
        return f"time has no zone: {TIME_EXAMPLE}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        if kind == "too_short" and bound == 1:
            return "must not be empty: give at least one"
        if bound is not None:
            word = "at least" if kind == "too_short" else "at most"
            return f"give {word} {_count(bound, 'item')}"
        return "has too few items" if kind == "too_short" else "has too many items"
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected")
        return f"expected one of {expected}" if expected else "not one of the allowed values"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        limit = next((ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx), None)
        words = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        return f"must be {words} {limit}" if limit is not None else _PLAIN[kind]
    if kind in _PLAIN:
        return _PLAIN[kind]
    text = str(error.get("msg", "is not valid"))
    text = text.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # a message written by flowguard's own validators stays; pydantic's own wording goes
    if text.startswith(("Input should", "Value should", "Input is", "Field required")):
        return "is not valid here"
    return text


# ------------------------------------------------------------------------------ plurals


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1 error`, `2 errors`, `1 entry`, `0 entries`: never `1 errors` or `error(s)`."""
    if number == 1:
        return f"{number} {noun}"
    if plural is None:
        plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" \
            else noun + "s"
    return f"{number} {plural}"


# --------------------------------------------------------------------------------- JSON

_JSON: dict[str, tuple[str, str]] = {
    "Expecting ',' delimiter": ("a comma is missing between two entries",
                                "separate entries with `,`: `{\"a\": 1, \"b\": 2}`"),
    "Expecting ':' delimiter": ("a colon is missing after a key",
                                "write `\"key\": value`"),
    "Expecting property name enclosed in double quotes": (
        "a key is not in double quotes, or a comma is left after the last entry",
        "write keys as `\"key\"` and put no comma before `}`"),
    "Expecting value": ("a value is missing or is not JSON",
                        "write a value: \"text\", a number, true, false, null, [..] or {..}; "
                        "no comma after the last item"),
    "Unterminated string starting at": ("a text is not closed",
                                        "end it with a double quote `\"`"),
    "Extra data": ("more text after the end of the JSON value",
                   "a file holds one JSON value: remove what follows it"),
    "Invalid control character at": ("a line break or tab inside a text",
                                     "write it as `\\n` or `\\t`"),
}


def plain_json(message: str) -> tuple[str, str | None]:
    """A `json.JSONDecodeError` message in plain words, and what to write."""
    for prefix, (text, hint) in _JSON.items():
        if message.startswith(prefix):
            return f"malformed JSON: {text}", hint
    return f"malformed JSON: {message}", None
