"""Fixtures for torch base-policy tests: one tiny DDPM policy trained on the session's smoke dataset (cube-single,
4 episodes of 201 rows), written once as a TorchScript file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch base policies need the torch extra (scripts/setup.sh installs it)")

from flowsteer.datasets.load import load_task  # noqa: E402

TASK = "cube-single-play-singletask-task2-v0"
TINY = {"hidden_dims": (32, 32, 32), "batch_size": 64, "steps": 200, "seed": 0}  # about 1 s on one core


@pytest.fixture(scope="session")
def smoke_data(smoke_cache: Path) -> dict[str, np.ndarray]:
    task = load_task(TASK, source="generated", episodes=4, episode_steps=201, cache_dir=smoke_cache, progress=False)
    return task.train


@pytest.fixture(scope="session")
def trained(smoke_data: dict[str, np.ndarray]):
    from flowsteer.policies.ddpm import train_ddpm_policy

    return train_ddpm_policy(smoke_data["observations"], smoke_data["actions"], smoke_data["terminals"], **TINY)


@pytest.fixture(scope="session")
def policy_file(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flowsteer.policies.torch_policy import save_torchscript_policy

    path = tmp_path_factory.mktemp("torch-policy") / "cube-single.pt"
    save_torchscript_policy(trained.sampler, trained.metadata, path)
    return path
