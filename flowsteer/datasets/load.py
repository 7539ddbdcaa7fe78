"""Load a single-task OGBench problem: its environment, its train and validation data, their provenance.

Data always goes through ``ogbench.make_env_and_datasets(name, dataset_path=...)``, so rewards, masks and
task semantics are OGBench's own (and no downloader runs: passing a path skips it).
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


def make_env(name: str, **env_kwargs: Any):
    """The single-task environment of ``name``; needs no dataset (locomotion included)."""
    import ogbench

    task = parse_task(name)
    return ogbench.make_env_and_datasets(task.name, env_only=True, **env_kwargs)


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
    env_kwargs: dict[str, Any] | None = None,
) -> OfflineTask:
    """Resolve the dataset of task ``name`` (see ``store.resolve``) and load it through ogbench."""
    import ogbench

    task = parse_task(name)
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
        env, train, val = ogbench.make_env_and_datasets(task.name, dataset_path=str(files.train), **(env_kwargs or {}))
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as exc:
        raise CorruptDatasetError(
            f"Reading {files.train} or {files.val} failed ({type(exc).__name__}: {exc}). The file is truncated "
            f"or corrupted: delete it and generate or download it again."
        ) from exc
    provenance = {**files.provenance, "task": task.name, "task_id": task.task_id}
    return OfflineTask(task, env, train, val, provenance)
