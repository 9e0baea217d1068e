"""docs/steps.md states the state machine the code runs."""

import re
from pathlib import Path

from bridgehost_steps.control import _SHAPES
from bridgehost_steps.machine import TRANSITIONS, ProcessEvent

DOC = (Path(__file__).parents[2] / "docs" / "steps.md").read_text()


def test_the_documented_transition_table_is_the_code_s():
    rows = re.findall(r"^\| `([a-z]+)` \| `([a-z-]+)` \| `([a-z]+)` \|$", DOC, re.M)
    assert len(rows) == len(set(rows))
    assert set(rows) == {(s.value, e.value, n.value) for (s, e), n in TRANSITIONS.items()}


def test_every_process_event_and_topic_is_documented():
    for event in ProcessEvent:
        assert f"| `{event.value}` |" in DOC
    for name in _SHAPES:
        assert f"`steps.{name}`" in DOC
