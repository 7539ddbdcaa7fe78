"""Fixtures for sweep tests: sweep files of tiny but real runs (real Ray, MLflow, OGBench data and envs)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowsteer.sweeps.cluster import processes_using

# Small networks keep each trial to seconds; the algorithms are unchanged.
TINY: dict[str, dict[str, Any]] = {
    "bc": {"actor_hidden_dims": [32, 32], "batch_size": 32},
    "fql": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32, "flow_steps": 4},
}


def sweep_file(directory: Path, cache: Path, name: str = "sweep", **fields: Any) -> Path:
    """A sweep file under ``directory`` whose runs use the generated dataset in ``cache``."""
    run = {
        "offline_steps": 60,
        "eval_interval": 20,
        "eval_episodes": 2,
        "eval_envs": 2,
        "log_interval": 20,
        "checkpoint_interval": 20,
        "chunk_size": 20,
        "data": {"source": "generated", "episodes": 4, "episode_steps": 201, "cache_dir": str(cache)},
    }
    values: dict[str, Any] = {
        "name": name,
        "algorithms": {"bc": {"hyperparameters": TINY["bc"]}},
        "tasks": ["cube-single-play:default"],
        "seeds": 1,
        "storage": str(directory / "storage"),
        "report": {"layouts": ["task"], "formats": ["csv", "md"]},
    }
    values |= fields
    values["run"] = run | fields.get("run", {})
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture
def write_sweep(tmp_path: Path, smoke_cache: Path) -> Callable[..., Path]:
    """write_sweep(name, **fields) -> a sweep file under tmp_path whose runs use the session's smoke dataset."""

    def write(name: str = "sweep", **fields: Any) -> Path:
        return sweep_file(tmp_path, smoke_cache, name, **fields)

    return write


def reap(directories: list[Path]) -> None:
    """SIGKILL the processes using ``directories`` (Ray clusters a test started)."""
    for directory in directories:
        for pid in processes_using(directory):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def reaper() -> Iterator[list[Path]]:
    """Directories whose processes are SIGKILLed at teardown (Ray clusters a test started), even on failure."""
    dirs: list[Path] = []
    yield dirs
    reap(dirs)


# What the action-chunking examples use that other parts of action chunking (docs/chunking.md) add: run settings,
# and learners that act in chunks.
EXAMPLE_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "qc-o2o.yaml": (("sparse_reward", "success_timing"), ("bfn", "fql", "rlpd")),
    "qam-offline.yaml": (("sparse_reward",), ("fql", "rebrac", "ifql", "dsrl_na", "rlpd")),
}


@pytest.fixture
def pending_example() -> Callable[..., str]:
    """pending_example(file name, learners=True) -> why that example sweep file cannot load on this checkout yet (or
    with learners=False, why the schema cannot accept it), or ''. Only the action-chunking examples may wait, and
    only for what EXAMPLE_NEEDS names."""
    from flowsteer.algorithms.registry import ALGORITHMS, chunk_capable
    from flowsteer.platform.spec import RunSpec

    def pending(name: str, learners: bool = True) -> str:
        fields, chunked = EXAMPLE_NEEDS.get(name, ((), ()))
        lacking = [f"run setting {f}" for f in fields if f not in RunSpec.model_fields]
        if learners:
            lacking += [f"{a} acting in chunks" for a in chunked if a not in ALGORITHMS or not chunk_capable(a)]
        return f"{name} needs {', '.join(lacking)}" if lacking else ""

    return pending
