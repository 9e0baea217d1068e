import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the test modules import stepkit


@pytest.fixture(autouse=True)
def clean_plugin_env(monkeypatch):
    monkeypatch.delenv("BRIDGEHOST_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("BRIDGEHOST_DISABLE_PLUGINS", raising=False)
