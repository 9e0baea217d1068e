"""One reading of msgspec's validation errors, and one way to cut text, for
config, protocol and request errors alike."""

from __future__ import annotations

import msgspec
import pytest

from bridgehost.text import cut_middle
from bridgehost.validation import validation_issue


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Inner]


def issue_of(value):
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(value, Outer)
    return validation_issue(info.value)


def test_a_nested_type_error_gives_its_path_and_a_sentence():
    issue = issue_of({"items": [{"n": 1}, {"n": "two"}]})
    assert (issue.path, issue.key) == (".items[1].n", "items[1].n")
    assert issue.expected == "expected int, got str"


def test_unknown_and_missing_fields_are_named():
    assert issue_of({"items": [{"n": 1, "m": 2}]}).unknown_field == "m"
    missing = issue_of({})
    assert (missing.missing_field, missing.path, missing.key) == ("items", "", "")


def test_a_message_without_a_location_is_kept_whole():
    issue = validation_issue("Expected `object`, got `array`")
    assert issue == ("Expected `object`, got `array`", "")


@pytest.mark.parametrize("limit", [40, 64, 65536])
@pytest.mark.parametrize("inline", [False, True])
def test_cut_middle_keeps_both_ends_within_the_limit(limit, inline):
    text = "start" + "x" * 10**6 + "end"
    cut = cut_middle(text, limit, inline=inline)
    assert len(cut) <= limit
    assert "characters cut" in cut and ("\n" in cut) is not inline
    if limit > 64:
        assert cut.startswith("start") and cut.endswith("end")
