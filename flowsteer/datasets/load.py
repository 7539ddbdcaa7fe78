"""Load a single-task OGBench problem: its environment, its train and validation data, their provenance.

Data always goes through ``ogbench.make_env_and_datasets(name, dataset_path=...)``, so rewards, masks and
task semantics are OGBench's own (and no downloader runs: passing a path skips it). A task's options (sparse
reward, success timing; flowsteer.datasets.options) reach its data and every environment made here alike.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowsteer.datasets.catalog import OFFICIAL_EPISODE_STEPS, TaskRef, parse_task
from flowsteer.datasets.errors import CorruptDatasetError
from flowsteer.datasets.options import TaskOptions, apply_to_data, check_options
from flowsteer.datasets.store import Source, resolve

TRANSITION_KEYS = ("observations", "actions", "next_observations", "rewards", "masks", "terminals")


@dataclass
class OfflineTask:
    """One single-task problem, ready for a learner."""

    task: TaskRef
    env: Any  # gymnasium.Env of the single task (terminates on success, `info['success']`)
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    provenance: dict[str, Any]

    @property
    def name(self) -> str:
        return self.task.name


def make_env(name: str, options: TaskOptions | None = None):
    """The single-task environment of ``name`` under ``options``; needs no dataset (locomotion included)."""
    import ogbench

    options = options or TaskOptions()
    task = parse_task(name)
    check_options(task, options)
    return _with_options(ogbench.make_env_and_datasets(task.name, env_only=True, **options.env_kwargs()), options)


def _with_options(env: Any, options: TaskOptions) -> Any:
    if not options.sparse_reward:
        return env
    from flowsteer.datasets.sparse_env import SparseReward  # gymnasium: only where environments are made

    return SparseReward(env)


def load_task(
    name: str,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    source: Source = "auto",
    episodes: int = 1000,
    seed: int = 0,
    episode_steps: int = OFFICIAL_EPISODE_STEPS,
    generate: bool = True,
    workers: int = 1,
    progress: bool = True,
    options: TaskOptions | None = None,
) -> OfflineTask:
    """Resolve the dataset of task ``name`` (see ``store.resolve``) and load it through ogbench, its environment,
    train and validation data under ``options``."""
    import ogbench

    options = options or TaskOptions()
    task = parse_task(name)
    check_options(task, options)
    files = resolve(
        task.dataset.name,
        data_dir=data_dir,
        cache_dir=cache_dir,
        source=source,
        episodes=episodes,
        seed=seed,
        episode_steps=episode_steps,
        generate=generate,
        workers=workers,
        progress=progress,
    )
    try:
        env, train, val = ogbench.make_env_and_datasets(
            task.name, dataset_path=str(files.train), **options.env_kwargs()
        )
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as exc:
        raise CorruptDatasetError(
            f"Reading {files.train} or {files.val} failed ({type(exc).__name__}: {exc}). The file is truncated "
            f"or corrupted: delete it and generate or download it again."
        ) from exc
    provenance = {**files.provenance, "task": task.name, "task_id": task.task_id}
    env = _with_options(env, options)
    return OfflineTask(task, env, apply_to_data(train, options), apply_to_data(val, options), provenance)
