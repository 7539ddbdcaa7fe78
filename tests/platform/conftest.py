"""Fixtures for run tests: tiny but real runs (real data, real environments, real MLflow)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowsteer.platform.spec import RunSpec

TASK = "cube-single-play-singletask-task2-v0"

# Small networks keep compilation and updates fast; the algorithms' logic is unchanged.
TINY_DSRL = {
    "actor_hidden_dims": [32, 32],
    "value_hidden_dims": [32, 32],
    "base_hidden_dims": [32, 32],
    "num_critics": 2,
    "batch_size": 32,
    "flow_steps": 3,  # decoding is unrolled into every DSRL update; 3 Euler steps compile much faster than 10
}
TINY: dict[str, dict[str, Any]] = {
    "bc": {"actor_hidden_dims": [32, 32], "batch_size": 32},
    "iql": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32},
    "rebrac": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32},
    "ifql": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32, "num_samples": 4},
    "fql": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32},
    "flow_bc": {"actor_hidden_dims": [32, 32], "batch_size": 32},
    "dsrl_na": {**TINY_DSRL, "base_steps": 30},
    "dsrl_sac": {**TINY_DSRL, "warmup_steps": 5},  # base-policy rollouts before the first online update
    "idql": {
        "value_hidden_dims": [32, 32],
        "actor_hidden_dim": 32,
        "actor_num_blocks": 1,
        "batch_size": 32,
        "critic_batch_size": 32,
        "num_samples": 4,
    },
    "rlpd": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32},
    "calql": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32, "cql_n_actions": 4},
}


def spec_factory(root: Path, smoke_cache: Path) -> Callable[..., RunSpec]:
    """RunSpec factory: the session's smoke dataset, outputs and MLflow store under ``root``."""

    def make(algo: str = "fql", output: str = "runs", **fields: Any) -> RunSpec:
        values: dict[str, Any] = {
            "algo": algo,
            "task": TASK,
            "hyperparameters": TINY[algo],
            "offline_steps": 60,
            "online_steps": 0,
            "eval_interval": 60,
            "eval_episodes": 2,
            "eval_envs": 2,
            "log_interval": 20,
            "checkpoint_interval": 30,
            "chunk_size": 20,
            "data": {"source": "generated", "episodes": 4, "episode_steps": 201, "cache_dir": str(smoke_cache)},
            "output_dir": str(root / output),
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "experiment": "tests",
        }
        return RunSpec.from_dict(values | fields)

    return make


@pytest.fixture
def make_spec(tmp_path: Path, smoke_cache: Path) -> Callable[..., RunSpec]:
    """RunSpec factory: the session's smoke dataset, outputs and MLflow store under tmp_path."""
    return spec_factory(tmp_path, smoke_cache)


_HOLD = (
    "import sys, time; from pathlib import Path; from flowsteer.rundir import RunDirectory\n"
    "with RunDirectory(Path(sys.argv[1])).owned('x'):\n    print('held', flush=True); time.sleep(600)"
)


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """lock_holder(run_dir) -> another process that owns ``run_dir`` until the test SIGKILLs it (or ends)."""
    started: list[subprocess.Popen] = []

    def hold(run_dir: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()
