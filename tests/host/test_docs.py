"""Every hook is documented in docs/hooks.md with its exact signature, and
the page documents no hook that does not exist. The hooks are read from the
loaded plugin manager, as datasette's docs tests read its hookspecs, so the
hooks plugins add (``add_hookspecs``: bridgehost-analysis'
``register_analyses``, bridgehost-steps' ``register_steps``) are covered."""

import inspect
import re
from pathlib import Path

import pytest

from bridgehost.plugins import load_plugins
from bridgehost.registry import Kind

DOC = Path(__file__).parents[2] / "docs" / "hooks.md"
HEADING = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\) -> (?P<returns>[^`]+)`$", re.M)


@pytest.fixture(scope="module")
def specs():
    """{hook name: hookspec function} of every workspace plugin's manager."""
    plugins = load_plugins()
    assert not plugins.failures, plugins.failures
    return {
        name: caller.spec.function
        for name, caller in vars(plugins.pm.hook).items()
        if getattr(caller, "spec", None) is not None
    }


def test_every_hookspec_is_documented_with_its_signature(specs):
    text = DOC.read_text()
    assert {"register_tasks", "add_hookspecs", "register_analyses", "register_steps"} <= set(specs)
    for name, fn in specs.items():
        signature = inspect.signature(fn)
        params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
        heading = f"### `{name}({params}) -> {signature.return_annotation}`"
        assert heading in text, f"docs/hooks.md lacks {heading}"
        assert (fn.__doc__ or "").strip(), f"hookspec {name} has no docstring"


def test_the_page_documents_only_hooks_that_exist(specs):
    documented = [m.group("name") for m in HEADING.finditer(DOC.read_text())]
    assert sorted(documented) == sorted(specs), "docs/hooks.md and the loaded hookspecs list different hooks"


def test_each_registry_kind_is_filled_by_a_hook(specs):
    for kind in Kind:
        assert kind.hook in specs, f"no hookspec {kind.hook} for the {kind.value} registry"
