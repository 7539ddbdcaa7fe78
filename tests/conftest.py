"""Fixtures shared by every test package: one small generated OGBench dataset per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowsteer.datasets.build import build_dataset
from flowsteer.datasets.generate import GenerationSpec

SMOKE = GenerationSpec("cube-single-play-v0", episodes=4, seed=0, episode_steps=201)  # as in test_generate


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding SMOKE (cube-single, 4 + 1 episodes of 201 rows), generated once per session."""
    root = tmp_path_factory.mktemp("smoke-cache")
    build_dataset(SMOKE, root, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def smoke_dir(smoke_cache: Path) -> Path:
    return smoke_cache / "ogbench" / SMOKE.cache_key
