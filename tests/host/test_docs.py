"""Every hook is documented in docs/hooks.md with its exact signature, and
the page documents no hook that does not exist; every config key has a row
in docs/config.md. The hooks are read from the
loaded plugin manager, as datasette's docs tests read its hookspecs, so the
hooks plugins add (``add_hookspecs``: bridgehost-analysis'
``register_analyses``, bridgehost-steps' ``register_steps``) are covered."""

import inspect
import re
from pathlib import Path

import msgspec
import pytest

from bridgehost.config import HostConfig, PluginsConfig, TaskConfig, TransportConfig, TriggerConfig, WatchdogConfig
from bridgehost.plugins import load_plugins
from bridgehost.registry import Kind

DOC = Path(__file__).parents[2] / "docs" / "hooks.md"
HEADING = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\) -> (?P<returns>[^`]+)`$", re.MULTILINE)


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


CONFIG_DOC = Path(__file__).parents[2] / "docs" / "config.md"
BASES = {Kind.TRANSPORT: TransportConfig, Kind.TRIGGER: TriggerConfig, Kind.TASK: TaskConfig, Kind.WATCHDOG: WatchdogConfig}


def sections(text):
    """{heading line: the rows' keys (`| \\`key\\` |`) under it, to the next heading}."""
    found, heading = {}, ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line
            found[heading] = set()
        elif match := re.match(r"^\| `([\w.]+)` \|", line):
            found[heading].add(match.group(1))
    return found


def keys(struct):
    return [f.encode_name for f in msgspec.structs.fields(struct)]


def test_every_config_key_has_a_row_in_config_md():
    """As datasette's docs test of its settings: every field of every config
    Struct the loaded plugins register (core and plugins), and of [host] and
    [plugins], has a row in docs/config.md under its kind's heading
    (``### `kind = "zmq"` transport (bridgehost-ipc)``); the fields every
    kind shares under ``### Every `[[transports]]```."""
    plugins = load_plugins()
    assert not plugins.failures, plugins.failures
    found = sections(CONFIG_DOC.read_text())
    missing = []

    def check(heading_pattern, fields, what):
        headings = [h for h in found if re.match(heading_pattern, h)]
        if len(headings) != 1:
            missing.append(f"{what}: {len(headings)} headings match {heading_pattern!r}")
            return
        missing.extend(f"{what}: {key}" for key in fields if key not in found[headings[0]])

    check(r"^## `\[host\]`$", keys(HostConfig), "[host]")
    check(r"^## `\[plugins\]`$", keys(PluginsConfig), "[plugins]")
    checked = 0
    for kind, base in BASES.items():
        check(rf"^### Every `\[\[{kind.section}\]\]`$", keys(base), f"every [[{kind.section}]]")
        for entry in plugins.registry(kind):
            own = [key for key in keys(entry.config) if key not in keys(base)]
            check(rf'^### `kind = "{re.escape(entry.name)}"` {kind.value} \(', own, f"{kind.value} {entry.name!r} ({entry.plugin})")
            checked += 1
    assert checked >= 11  # every workspace plugin's kinds
    assert not missing, "docs/config.md lacks rows:\n" + "\n".join(missing)
