"""What JSON from outside may carry before Capandex parses, stores or computes with it.

Python's ``json`` accepts more than JSON and more than the rest of the stack can hold, and each
excess used to end in a 500 somewhere downstream:

* ``NaN``, ``Infinity`` and numbers that overflow a double (``1e309`` → ``inf``): Postgres jsonb
  refuses them, SQLite silently stores ``null`` (a corrupted document);
* integers past 2**53 - 1 (``10**400``): JavaScript clients cannot represent them, and turning
  one into a float for the engine raises ``OverflowError``;
* lone surrogates (``"\\udfff"``): no UTF-8 encoding exists, so no database driver can store them;
* NUL characters: Postgres text and jsonb cannot hold one;
* deep nesting (``[[[[…`` or ``{"a":{"a":…``): the parser and every recursive walker after it
  run out of stack (``RecursionError``).

:func:`first_problem` walks a decoded value without recursion and names the first offending
place; :func:`loads` parses text that has not been through a framework's parser (a cookie, a
webhook body) and refuses the same things, checking the nesting depth before the parser
recurses.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: the deepest nesting of objects and arrays accepted (a flow document needs about 5 levels)
MAX_DEPTH = 32
#: the largest integer magnitude every JSON client represents exactly (RFC 7493, I-JSON)
MAX_SAFE_INTEGER = 2**53 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
#: strings (skipped, with their escapes) and the brackets that open or close a level
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class UnsafeJson(ValueError):
    """The text or value cannot be accepted; ``path`` names where (``""`` for the whole value)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path, self.reason = path, reason


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    if _SURROGATE.search(text):
        return "must be valid Unicode (it contains a lone surrogate)"
    return None


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        return f"must be an integer between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (NaN, Infinity and overflowing numbers are not JSON)"
    return None


#: longest key quoted in a path: a path names the place, it must not echo a long input back
_KEY_CHARS = 40


def _join(path: str, key: str | int) -> str:
    key = str(key)
    key = key if len(key) <= _KEY_CHARS else key[:_KEY_CHARS] + "…"
    return f"{path}.{key}" if path else key


def first_problem(value: Any, path: str = "", *, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """``(path, reason)`` of the first thing in ``value`` that cannot be stored or sent back, or
    None. Paths are dotted like the API's validation details (``nodes.0.data.period``)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            why = _text_problem(item)
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return where, f"nests deeper than {max_depth} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (why := _text_problem(key)):
                    return where, f"has a key that {why}"
                stack.append((child, _join(where, key), depth + 1))
            continue
        else:
            why = _number_problem(item)
        if why:
            return where, why
    return None


def nesting_depth(text: str) -> int:
    """The deepest level of ``[``/``{`` in JSON ``text`` (strings skipped); linear time."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise UnsafeJson("", f"{name} is not a JSON number")


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON ``text`` strictly: at most ``max_depth`` levels (checked before parsing), no
    NaN/Infinity, nothing :func:`first_problem` refuses.

    Raises:
        UnsafeJson: refused (``path`` and ``reason`` say what); also for text that is not JSON
            (``reason`` then starts with "not valid JSON").
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeJson("", "not valid JSON: the text is not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise UnsafeJson("", f"nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, UnsafeJson):
            raise
        raise UnsafeJson("", "not valid JSON") from None
    problem = first_problem(value, max_depth=max_depth)
    if problem:
        raise UnsafeJson(*problem)
    return value
