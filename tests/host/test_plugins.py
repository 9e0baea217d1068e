"""Plugins load from entry points; a broken one is recorded and does not stop
the others; selecting its kind raises an error chained to its exception."""

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import types

import pytest

from bridgehost import hookimpl
from bridgehost.config import TaskConfig, parse_config
from bridgehost.errors import UnknownKindError
from bridgehost.plugins import load_plugins
from bridgehost.registry import CatalogSpec, Kind


def fake_distribution(root, dist, plugin, module_source, provides=()):
    """Install a distribution the way pip would leave it on sys.path: a module
    plus a .dist-info folder whose entry_points.txt names it, and declares
    ``provides`` (``"task.acme-task"``) in the group ``bridgehost.provides``."""
    module = f"{dist.replace('-', '_')}_plugin"
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    declared = "".join(f"{name} = {module}\n" for name in provides)
    (info / "entry_points.txt").write_text(f"[bridgehost]\n{plugin} = {module}\n\n[bridgehost.provides]\n{declared}")


BROKEN = "import this_module_does_not_exist\n"
GOOD = """
from bridgehost import hookimpl
from bridgehost.config import TaskConfig

class Cfg(TaskConfig, kw_only=True):
    pass

class Task:
    def __init__(self, config, host): pass
    async def run(self, job): return {"acme": True}

@hookimpl
def register_tasks(registry):
    registry.add("acme-task", Task, config=Cfg)
"""


def bridgehost_plugins_json(site):
    """``bridgehost plugins --json`` run with ``site`` on the path: ({name: plugin}, env)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)}, env


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugin_is_recorded_and_the_others_load(site):
    fake_distribution(site, "acme-broken", "acmebroken", BROKEN)
    fake_distribution(site, "acme-good", "acmegood", GOOD)
    plugins = load_plugins()
    assert "acmebroken" in plugins.failures
    assert plugins.infos["acmebroken"].error.startswith("ModuleNotFoundError")
    assert plugins.infos["acmebroken"].distribution == "acme-broken"
    assert "acme-task" in plugins.registry(Kind.TASK)
    assert plugins.infos["acmegood"].kinds == {"task": ["acme-task"]}
    assert plugins.infos["acmegood"].version == "1.2.3"
    assert "callable" in plugins.registry(Kind.TASK)


def test_selecting_a_kind_of_a_broken_plugin_chains_its_exception(site):
    fake_distribution(site, "acme-broken", "acmebroken", BROKEN)
    plugins = load_plugins(load=["acmebroken"])
    with pytest.raises(UnknownKindError) as info:
        parse_config(tomllib.loads('[[tasks]]\nname = "t"\nkind = "acme"\n'), plugins, source="rig.toml")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "acmebroken" in info.value.hint


def test_a_known_kind_whose_distribution_is_broken_chains_its_exception(site):
    # A broken bridgehost-steps: the error names it and chains its ImportError,
    # even with other plugins failing too.
    fake_distribution(site, "bridgehost-steps", "steps", BROKEN, provides=["task.step"])
    fake_distribution(site, "acme-broken", "acmebroken", "raise RuntimeError('other')\n")
    plugins = load_plugins(load=["steps", "acmebroken"])
    with pytest.raises(UnknownKindError) as info:
        parse_config(tomllib.loads('[[tasks]]\nname = "t"\nkind = "step"\n'), plugins)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "bridgehost-steps is installed but its plugin 'steps' failed to load" in info.value.hint


def test_a_kind_no_installed_distribution_declares_says_where_to_look(site):
    fake_distribution(site, "acme-good", "acmegood", GOOD, provides=["task.acme-task"])
    plugins = load_plugins()
    with pytest.raises(UnknownKindError) as info:
        parse_config(tomllib.loads('[[tasks]]\nname = "t"\nkind = "acme-tsk"\n'), plugins)
    assert "task kind 'acme-tsk' is not available (available: acme-task, analysis, callable," in info.value.message
    assert info.value.hint == (
        "no installed distribution provides it (none declares 'task.acme-tsk' in the entry-point group "
        "'bridgehost.provides'): find a plugin that provides it and install it next to bridgehost "
        "(docs/writing-plugins.md); `bridgehost plugins` lists what is installed"
    )


def test_the_distribution_that_declares_a_kind_is_named_when_its_plugin_is_left_out(site):
    """The hint comes from the metadata the distribution declares, without
    importing it: a third-party one is named as a first-party one is."""
    fake_distribution(site, "acme-good", "acmegood", GOOD, provides=["task.acme-task", "recipe.acme.bread"])
    plugins = load_plugins(disable=["acmegood"], extra=[("owner", RecipesOwner())])
    with pytest.raises(UnknownKindError) as info:
        parse_config(tomllib.loads('[[tasks]]\nname = "t"\nkind = "acme-task"\n'), plugins)
    assert info.value.hint == (
        "acme-good is installed but its plugin 'acmegood' is disabled by [plugins] disable: remove 'acmegood' from it"
    )
    with pytest.raises(UnknownKindError, match="recipe 'acme.bread' is not available") as info:
        plugins.catalog(RecipesSpecs.RECIPES).get("acme.bread")
    assert info.value.hint.startswith("acme-good is installed but its plugin 'acmegood' is disabled")
    # Declared, loaded, yet not registered: the declaration is wrong; say so.
    loaded = load_plugins(load=["acmegood"], extra=[("owner", RecipesOwner())])
    with pytest.raises(UnknownKindError) as info:
        loaded.catalog(RecipesSpecs.RECIPES).get("acme.bread")
    assert info.value.hint == (
        "acme-good declares 'recipe.acme.bread' (bridgehost.provides entry point) but no loaded plugin "
        "registered it; `bridgehost plugins` lists what each plugin registered"
    )


def test_every_workspace_distribution_declares_what_its_plugin_registers():
    """The bridgehost.provides metadata of each plugin's pyproject.toml lists
    exactly what its plugin registers (its kinds and catalog entries), so a
    hint never names a distribution for what it does not provide, nor misses one."""
    from importlib.metadata import entry_points

    plugins = load_plugins()
    assert not plugins.failures, plugins.failures
    for info in plugins.infos.values():
        if info.name == "builtin":
            continue  # always loaded: never the subject of a hint
        registered = {f"{kind}.{name}" for kind, names in info.kinds.items() if kind != "command" for name in names}
        declared = {ep.name for ep in entry_points(group="bridgehost.provides") if ep.dist.name == info.distribution}
        assert declared == registered, f"{info.distribution}: pyproject.toml declares {sorted(declared)}"


def test_a_register_hook_that_raises_is_a_failure_and_registers_nothing():
    def register_tasks(registry):
        registry.add("half", object, config=TaskConfig)
        raise ValueError("bad registration")

    module = types.ModuleType("raising_plugin")
    module.register_tasks = hookimpl(register_tasks)
    plugins = load_plugins(load=[], extra=[("raising", module)])
    assert "half" not in plugins.registry(Kind.TASK)
    assert "raising" in plugins.failures
    assert "callable" in plugins.registry(Kind.TASK)


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    def make(name):
        module = types.ModuleType(name)
        module.register_tasks = hookimpl(lambda registry: registry.add("dup", object, config=TaskConfig))
        return (name, module)

    plugins = load_plugins(load=[], extra=[make("first"), make("second")])
    assert "dup" in plugins.registry(Kind.TASK)
    failure = plugins.failures["second"]
    assert "registered twice" in str(failure.error) and "'first'" in str(failure.error)


def test_plugins_disabled_by_environment_and_by_config(site, monkeypatch):
    fake_distribution(site, "acme-good", "acmegood", GOOD)
    assert "acmegood" in load_plugins().infos
    assert "acmegood" not in load_plugins(disable=["acmegood"]).infos
    monkeypatch.setenv("BRIDGEHOST_DISABLE_PLUGINS", "acmegood, other")
    assert "acmegood" not in load_plugins().infos
    monkeypatch.delenv("BRIDGEHOST_DISABLE_PLUGINS")
    monkeypatch.setenv("BRIDGEHOST_LOAD_PLUGINS", "acmegood")
    # Each variable overrides its own config key: the allow-list from the
    # environment replaces [plugins] load.
    assert set(load_plugins(load=["other"]).infos) == {"builtin", "acmegood"}
    monkeypatch.setenv("BRIDGEHOST_DISABLE_PLUGINS", "")
    assert set(load_plugins(disable=["acmegood"]).infos) == {"builtin", "acmegood"}


def test_bridgehost_plugins_command_lists_failures(site):
    fake_distribution(site, "acme-broken", "acmebroken", BROKEN)
    fake_distribution(site, "acme-good", "acmegood", GOOD)
    listed, env = bridgehost_plugins_json(site)
    assert listed["acmebroken"]["error"].startswith("ModuleNotFoundError")
    assert listed["acmegood"]["kinds"] == {"task": ["acme-task"]}
    assert listed["acmegood"]["distribution"] == "acme-good"
    text = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "plugins", "--traceback"], capture_output=True, text=True, env=env
    ).stdout
    assert "FAILED TO LOAD: ModuleNotFoundError" in text
    assert "this_module_does_not_exist" in text


def test_a_lifecycle_wrapper_is_refused_at_load():
    class Wrapping:
        @hookimpl(wrapper=True)
        def job_finished(self, job, outcome):
            return (yield)

    plugins = load_plugins(load=[], extra=[("wrapping", Wrapping())])
    assert "job_finished is a notification" in str(plugins.failures["wrapping"].error)
    assert plugins.pm.get_plugin("wrapping") is None


MISSPELT = """
from bridgehost import hookimpl

@hookimpl
def register_task(registry):
    pass
"""


def test_a_misspelt_hookimpl_is_that_plugin_s_failure_shown_by_bridgehost_plugins(site):
    fake_distribution(site, "acme-typo", "acmetypo", MISSPELT)
    fake_distribution(site, "acme-good", "acmegood", GOOD)
    listed, _ = bridgehost_plugins_json(site)
    assert listed["acmetypo"]["error"] == (
        "PluginValidationError: hookimpl 'register_task' matches no hook (did you mean 'register_tasks'?); "
        "a hook of a plugin that may be absent is marked @hookimpl(optionalhook=True)"
    )
    assert listed["acmegood"]["error"] is None and listed["acmegood"]["kinds"] == {"task": ["acme-task"]}


def test_a_hookimpl_with_other_arguments_than_its_hookspec_is_a_failure():
    class Wrong:
        @hookimpl
        def register_tasks(self, registri):
            pass

    plugins = load_plugins(load=[], extra=[("wrong", Wrong())])
    assert "registri" in str(plugins.failures["wrong"].error)
    assert plugins.pm.get_plugin("wrong") is None


class RecipesSpecs:
    """A hook a plugin adds for other plugins: named recipes for its task kind."""

    RECIPES = CatalogSpec("recipe", make=lambda name, value, *, summary="": (value, summary))

    @staticmethod
    @RECIPES.hookspec
    def register_recipes(registry) -> None:
        """Publish recipes: ``registry.add(name, text)``."""


class RecipesOwner:
    @hookimpl
    def add_hookspecs(self, pm):
        pm.add_hookspecs(RecipesSpecs)

    @hookimpl
    def register_recipes(self, registry):
        registry.add("owner.soup", "water", summary="the owner's own")


class RecipesPublisher:
    def __init__(self, name, *, fail=False):
        self.name, self.fail = name, fail

    @hookimpl
    def register_recipes(self, registry):
        registry.add(f"{self.name}.bread", "flour")
        if self.fail:
            raise RuntimeError("half published")


def test_a_plugin_adds_a_hook_that_plugins_loaded_before_it_implement():
    # The publisher comes first: hookspecs are all added before any hookimpl is checked.
    plugins = load_plugins(
        load=[],
        extra=[("alpha", RecipesPublisher("alpha")), ("owner", RecipesOwner()), ("broken", RecipesPublisher("broken", fail=True))],
    )
    catalog = plugins.catalog(RecipesSpecs.RECIPES)
    assert catalog.names() == ["alpha.bread", "owner.soup"]
    assert catalog.get("owner.soup") == ("water", "the owner's own")
    assert catalog.owners["alpha.bread"] == "alpha"
    assert plugins.infos["alpha"].kinds == {"recipe": ["alpha.bread"]}
    assert "half published" in str(plugins.failures["broken"].error)
    with pytest.raises(UnknownKindError, match=r"recipe 'x' is not available \(available: alpha.bread, owner.soup\)") as info:
        catalog.get("x")
    assert isinstance(info.value.__cause__, RuntimeError)  # the one failed plugin may have provided it


def test_without_the_plugin_that_adds_a_hook_its_hookimpls_must_be_optional():
    class Optional:
        @hookimpl(optionalhook=True)
        def register_recipes(self, registry):
            raise AssertionError("never called: nobody added the hook")

    plugins = load_plugins(load=[], extra=[("optional", Optional()), ("plain", RecipesPublisher("plain"))])
    assert "optional" not in plugins.failures
    assert "matches no hook" in str(plugins.failures["plain"].error)
    assert plugins.catalog(RecipesSpecs.RECIPES).names() == []
