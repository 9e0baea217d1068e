import importlib
import tomllib
from pathlib import Path

import pytest

from bridgehost.config import parse_config
from bridgehost.host import Host
from bridgehost.plugins import load_plugins

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def clean_plugin_env(monkeypatch):
    monkeypatch.delenv("BRIDGEHOST_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("BRIDGEHOST_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def targets(monkeypatch):
    """The ``targets`` module, importable so callable tasks can name ``targets:NAME``."""
    monkeypatch.syspath_prepend(str(HERE))
    return importlib.import_module("targets")


@pytest.fixture
def make_host(targets):
    """Build a Host from TOML text with only the built-in plugin plus the
    given (name, module) plugins."""

    def make(text: str, *extra) -> Host:
        plugins = load_plugins(load=[], extra=list(extra))
        return Host(parse_config(tomllib.loads(text), plugins, source="test.toml"), plugins)

    return make
