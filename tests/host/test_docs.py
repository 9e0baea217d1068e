"""Every hook is documented in docs/hooks.md with its exact signature, and
the page documents no hook that does not exist: the core's hooks and those
a workspace plugin adds to the plugin manager itself (bridgehost-steps'
``register_steps``)."""

import inspect
import re
from pathlib import Path

from bridgehost import hookspecs
from bridgehost.registry import Kind
from bridgehost_steps import hookspecs as steps_hookspecs

HOOKSPEC_MODULES = (hookspecs, steps_hookspecs)

DOC = Path(__file__).parents[2] / "docs" / "hooks.md"
HEADING = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\) -> (?P<returns>[^`]+)`$", re.M)


def specs(*modules):
    return {
        name: fn
        for module in modules or HOOKSPEC_MODULES
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and hasattr(fn, "bridgehost_spec")
    }


def test_every_hookspec_is_documented_with_its_signature():
    text = DOC.read_text()
    assert len(specs()) >= 12
    for name, fn in specs().items():
        signature = inspect.signature(fn)
        params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
        heading = f"### `{name}({params}) -> {signature.return_annotation}`"
        assert heading in text, f"docs/hooks.md lacks {heading}"
        assert (fn.__doc__ or "").strip(), f"hookspec {name} has no docstring"


def test_the_page_documents_only_hooks_that_exist():
    documented = [m.group("name") for m in HEADING.finditer(DOC.read_text())]
    assert sorted(documented) == sorted(specs()), "docs/hooks.md and hookspecs.py list different hooks"


def test_each_registry_kind_is_filled_by_a_hook():
    for kind in Kind:
        assert kind.hook in specs(hookspecs), f"no hookspec {kind.hook} for the {kind.value} registry"
