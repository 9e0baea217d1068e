"""Topic routing: which handler answers a request, by its topic.

A pure table, no sockets and no asyncio, so its rules are tested alone
(``tests/ipc/test_routing.py``). A pattern is one of:

- an exact topic, ``"steps.pause"``;
- a prefix ending in ``.*``: ``"steps.*"`` matches every topic that starts
  with ``"steps."``;
- ``"*"``, the catch-all (the ``zmq`` trigger's).

An exact topic wins over a prefix, a longer prefix over a shorter, and the
catch-all comes last. Protocol reference: ``docs/ipc-protocol.md`` section 7.
"""

from __future__ import annotations

from typing import Generic, TypeVar

H = TypeVar("H")


class TopicRoutes(Generic[H]):
    """Handlers of type ``H`` by topic pattern (see the module doc)."""

    def __init__(self) -> None:
        self._exact: dict[str, H] = {}
        self._prefixes: dict[str, H] = {}  # "steps." -> handler; "" is the catch-all

    def add(self, pattern: str, handler: H) -> None:
        """Route ``pattern`` to ``handler``. Raises ``ValueError`` for a
        malformed pattern (``'*'`` anywhere but alone or after a final dot)
        or one that already has a handler."""
        table, key = self._table(pattern)
        if key in table:
            raise ValueError(f"topic pattern {pattern!r} already has a handler")
        table[key] = handler

    def remove(self, pattern: str) -> None:
        """Stop routing ``pattern`` (as given to ``add``); no error if absent.
        Raises ``ValueError`` for a malformed pattern."""
        table, key = self._table(pattern)
        table.pop(key, None)

    def patterns(self) -> list[str]:
        """The routed patterns, sorted (``host.ping``, ``steps.*``, ``*`` ...)."""
        return sorted([*self._exact, *(f"{p}*" for p in self._prefixes)])

    def lookup(self, topic: str) -> H | None:
        """The handler for ``topic``: its exact route, else the longest
        matching prefix, else the catch-all; None if nothing matches."""
        handler = self._exact.get(topic)
        if handler is not None:
            return handler
        best = max((p for p in self._prefixes if topic.startswith(p)), key=len, default=None)
        return None if best is None else self._prefixes[best]

    def _table(self, pattern: str) -> tuple[dict[str, H], str]:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"a topic pattern is a non-empty string, got {pattern!r}")
        if pattern == "*" or pattern.endswith(".*"):
            prefix = pattern[:-1]
            if "*" not in prefix:
                return self._prefixes, prefix
        elif "*" not in pattern:
            return self._exact, pattern
        raise ValueError(f"topic pattern {pattern!r}: '*' may only stand alone or end a prefix, as in 'steps.*'")
