"""Every hook is documented in docs/hooks.md with its exact signature."""

import inspect
from pathlib import Path

from bridgehost import hookspecs

DOC = Path(__file__).parents[2] / "docs" / "hooks.md"


def test_every_hookspec_is_documented_with_its_signature():
    text = DOC.read_text()
    specs = [
        (name, fn) for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "bridgehost_spec")
    ]
    assert len(specs) >= 10
    for name, fn in specs:
        params = ", ".join(f"{p.name}: {p.annotation}" for p in inspect.signature(fn).parameters.values())
        heading = f"### `{name}({params}) -> None`"
        assert heading in text, f"docs/hooks.md lacks {heading}"
