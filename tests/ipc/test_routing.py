"""The topic routing table alone: exact topic, then the longest prefix, then
the catch-all (docs/ipc-protocol.md section 7)."""

from __future__ import annotations

import pytest

from bridgehost_ipc.routing import TopicRoutes


def routes(*patterns: str) -> TopicRoutes[str]:
    table: TopicRoutes[str] = TopicRoutes()
    for pattern in patterns:
        table.add(pattern, pattern)  # each pattern's handler is its own name
    return table


@pytest.mark.parametrize(
    ("topic", "handler"),
    [
        ("steps.pause", "steps.pause"),  # exact beats every prefix
        ("steps.halt", "steps.*"),
        ("steps.jump.to", "steps.jump.*"),  # the longer prefix wins
        ("steps.jump", "steps.*"),  # "steps.jump.*" needs the dot
        ("python.run_analysis", "*"),
        ("", "*"),
    ],
)
def test_exact_then_longest_prefix_then_catch_all(topic, handler):
    table = routes("*", "steps.*", "steps.jump.*", "steps.pause")
    assert table.lookup(topic) == handler


def test_without_a_catch_all_an_unrouted_topic_has_no_handler():
    table = routes("steps.*")
    assert table.lookup("steps") is None
    assert table.lookup("python.run_analysis") is None


def test_remove_and_patterns():
    table = routes("steps.*", "host.ping", "*")
    assert table.patterns() == ["*", "host.ping", "steps.*"]
    table.remove("steps.*")
    table.remove("never.added.*")  # absent: no error
    assert table.lookup("steps.halt") == "*"
    assert table.patterns() == ["*", "host.ping"]


@pytest.mark.parametrize("pattern", ["", "steps*", "st*.x", "*.x", "**", None])
def test_malformed_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        routes().add(pattern, "h")


def test_a_taken_pattern_is_refused_and_keeps_its_handler():
    table = routes("steps.*")
    with pytest.raises(ValueError, match="'steps.\\*' already has a handler"):
        table.add("steps.*", "other")
    assert table.lookup("steps.halt") == "steps.*"
