"""Fixtures for dataset tests: an isolated home and cache (the smoke dataset lives in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real ~/.ogbench/data or ~/.cache/flowsteer."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FLOWSTEER_OGBENCH_DIR", raising=False)
    monkeypatch.delenv("FLOWSTEER_CACHE_DIR", raising=False)
    return home
