"""Every hook is documented in docs/hooks.md with its exact signature, and
the page documents no hook that does not exist; every config key has a row
in docs/config.md stating its default (the one table of keys: other pages
link to its sections), and every link to a section names a heading that
exists. The hooks are read from the
loaded plugin manager, as datasette's docs tests read its hookspecs, so the
hooks plugins add (``add_hookspecs``: bridgehost-analysis'
``register_analyses``, bridgehost-steps' ``register_steps``) are covered."""

import inspect
import re
import tomllib
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
    """{heading line: {key: its default cell} of the rows (`| \\`key\\` | type | default | meaning |`)
    under it, to the next heading}."""
    found, heading = {}, ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line
            found[heading] = {}
        elif match := re.match(r"^\| `([\w.]+)` \|[^|]*\|([^|]*)\|", line):
            found[heading][match.group(1)] = match.group(2).strip()
    return found


def default_mismatch(field, cell):
    """Why ``cell`` (a row's default column) does not state ``field``'s default, or None.
    "required" and "none" are checked; so is a cell that starts with a TOML value in
    backticks (`` `60.0` ``, `` `"queue"` ``, `` `[]` ``); other wording ("the kind") is prose."""
    required = field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT
    default = None if required else field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    if (cell == "required") != required:
        return f"default {cell!r}, but the field is {'required' if required else 'optional'}"
    if cell == "none" and default is not None:
        return f"default 'none', but the field's is {default!r}"
    literal = re.match(r"^`([^`]+)`", cell)
    if literal is None or required:
        return None
    try:
        documented = tomllib.loads(f"value = {literal.group(1)}")["value"]
    except tomllib.TOMLDecodeError:
        return None  # an expression (`concurrency + 1`): prose
    actual = msgspec.to_builtins(default)
    return None if documented == actual else f"default {documented!r}, but the field's is {actual!r}"


def keys(struct):
    return [f.encode_name for f in msgspec.structs.fields(struct)]


def test_every_config_key_has_a_row_in_config_md():
    """As datasette's docs test of its settings: every field of every config
    Struct the loaded plugins register (core and plugins), and of [host] and
    [plugins], has a row in docs/config.md under its kind's heading
    (``### `kind = "zmq"` transport (bridgehost-ipc)``), stating the field's
    default (``default_mismatch``); the fields every kind shares under
    ``### Every `[[transports]]```. config.md is the one table of keys: the
    other pages link to its sections."""
    plugins = load_plugins()
    assert not plugins.failures, plugins.failures
    found = sections(CONFIG_DOC.read_text())
    missing = []

    def check(heading_pattern, fields, what):
        headings = [h for h in found if re.match(heading_pattern, h)]
        if len(headings) != 1:
            missing.append(f"{what}: {len(headings)} headings match {heading_pattern!r}")
            return
        rows = found[headings[0]]
        for field in fields:
            if field.encode_name not in rows:
                missing.append(f"{what}: {field.encode_name}")
            elif why := default_mismatch(field, rows[field.encode_name]):
                missing.append(f"{what}: {field.encode_name}: {why}")

    check(r"^## `\[host\]`$", msgspec.structs.fields(HostConfig), "[host]")
    check(r"^## `\[plugins\]`$", msgspec.structs.fields(PluginsConfig), "[plugins]")
    checked = 0
    for kind, base in BASES.items():
        check(rf"^### Every `\[\[{kind.section}\]\]`$", msgspec.structs.fields(base), f"every [[{kind.section}]]")
        for entry in plugins.registry(kind):
            own = [f for f in msgspec.structs.fields(entry.config) if f.encode_name not in keys(base)]
            check(rf'^### `kind = "{re.escape(entry.name)}"` {kind.value} \(', own, f"{kind.value} {entry.name!r} ({entry.plugin})")
            checked += 1
    assert checked >= 11  # every workspace plugin's kinds
    assert not missing, "docs/config.md lacks rows or states other defaults:\n" + "\n".join(missing)


REPO = Path(__file__).parents[2]
PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", *sorted(REPO.glob("plugins/*/README.md")),
         *sorted(REPO.glob("examples/*/README.md"))]


def anchors(page):
    """The anchors GitHub gives the headings of ``page``: lower case, spaces to
    hyphens, punctuation other than ``-`` and ``_`` dropped; a repeated one gets
    ``-1``, ``-2``... (https://github.com/gjtorikian/html-pipeline, TableOfContentsFilter)."""
    found, seen, fenced = set(), {}, False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def test_links_to_a_section_name_a_heading_that_exists():
    """The pages link to config.md's sections instead of repeating its tables,
    so a renamed heading must not leave a link pointing nowhere."""
    broken = []
    for page in PAGES:
        for match in re.finditer(r"\]\(([^)#\s]*\.md)?#([^)\s]+)\)", page.read_text()):
            target = (page.parent / match.group(1)) if match.group(1) else page
            if not target.exists() or match.group(2) not in anchors(target):
                broken.append(f"{page.relative_to(REPO)}: {match.group(0)}")
    assert not broken, "links to no heading:\n" + "\n".join(broken)
