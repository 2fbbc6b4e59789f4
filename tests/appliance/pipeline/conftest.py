"""A small generated archive, made once per session (the generator is deterministic per seed)."""

from __future__ import annotations

import pytest

from appliance.pipeline.synth import generate


@pytest.fixture(scope="session")
def archive_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("alma")
    generate(root, observations=40, seed=7, size=96)
    return root


@pytest.fixture(autouse=True)
def run_home(tmp_path_factory, monkeypatch):
    """Every stage execution writes a run record: into a test home, never the user's."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("APPLIANCE_HOME", str(home))
    return home
