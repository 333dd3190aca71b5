"""capandex.safejson: strict, depth-bounded JSON for what comes from outside."""

from __future__ import annotations

import pytest

from capandex import safejson


@pytest.mark.parametrize("text, why", [
    ("[" * 3000, "deeper than 32"),
    ('{"a":' * 1300, "deeper than 32"),
    ('{"x": NaN}', "NaN is not a JSON number"),
    ('{"x": -Infinity}', "-Infinity is not a JSON number"),
    ('{"x": 1e309}', "finite"),
    ('{"x": %s}' % ("9" * 30), "integer between"),
    ('{"x": "\\udfff"}', "lone surrogate"),
    ('{"x": "a\\u0000"}', "NUL"),
    ("{'x': 1}", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_refused(text, why) -> None:
    with pytest.raises(safejson.UnsafeJson) as info:
        safejson.loads(text)
    assert why in str(info.value)


def test_accepted_values_round_trip() -> None:
    text = '{"a": [1, 2.5, -9007199254740991, "é😀", {"b": null, "c": true}], "d": "[[[ brackets in a string"}'
    assert safejson.loads(text) == {"a": [1, 2.5, -9007199254740991, "é😀", {"b": None, "c": True}],
                                    "d": "[[[ brackets in a string"}


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert safejson.nesting_depth('["[[[[", {"k": "]]]"}]') == 2
    assert safejson.nesting_depth('"\\"[["') == 0
    assert safejson.loads("[" * 32 + "]" * 32) is not None
    with pytest.raises(safejson.UnsafeJson):
        safejson.loads("[" * 33 + "]" * 33)


def test_first_problem_names_the_place() -> None:
    assert safejson.first_problem({"nodes": [{"data": {"p": float("nan")}}]}) == (
        "nodes.0.data.p", "must be a finite number (NaN, Infinity and overflowing numbers are not JSON)")
    assert safejson.first_problem({"k" * 100: "\x00"})[0] == "k" * 40 + "…"  # long keys are not echoed whole
    assert safejson.first_problem({"ok": [True, None, 1, "x"]}) is None
