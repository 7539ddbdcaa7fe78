"""Trials: a sweep expanded into runs, each with a stable id (its RunSpec's run_id).

The id is a hash of everything that determines a run's results (algorithm, task, seed, hyperparameters,
steps, action chunk, data), so rerunning a sweep finds the run directories it already has: finished trials are skipped,
interrupted ones continue from their last checkpoint, and no trial ever runs twice under two names.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from flowsteer.datasets.catalog import parse_task
from flowsteer.platform.spec import RunSpec
from flowsteer.rundir import read_json
from flowsteer.sweeps.spec import SweepSpec, split_point

FINAL_STATES = ("finished", "diverged")  # a trial in these states is not started again


@dataclass(frozen=True)
class Trial:
    """One run of the sweep."""

    stage: str  # 'grid', 'tune' (default tasks), 'broadcast' (the chosen setting elsewhere) or 'optuna'
    spec: RunSpec
    # What the sweep varies per setting: the algorithm's hyperparameters and any run settings its grid sweeps
    # (action_chunk); not the task entry's settings, which stay with their task when a setting is broadcast.
    point: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.run_id

    @property
    def setting(self) -> str:
        """The trial's configuration without its seed: trials that differ only in seed share it."""
        return setting_key(self.spec.algo, self.point)

    def describe(self) -> str:
        """Its hyperparameters, and the run settings its grid sweeps, as JSON."""
        swept = split_point(self.spec.algo, self.point)[1]
        return json.dumps(self.spec.hyperparameters | swept, sort_keys=True, default=str)

    def status(self) -> str:
        """'new', or the state in the run directory's status.json (finished, running, failed, diverged, ...)."""
        status = read_json(self.spec.run_dir / "status.json")
        if status is None:
            return "new" if not self.spec.run_dir.exists() else "created"
        return str(status.get("state", "created"))


def setting_key(algo: str, hyperparameters: dict[str, Any]) -> str:
    return f"{algo} {json.dumps(hyperparameters, sort_keys=True, default=str)}"


def grid_trials(spec: SweepSpec, stage: str = "grid", tasks: list[str] | None = None) -> list[Trial]:
    """Algorithms x grid points x tasks x seeds, in that nesting order (seeds of one setting adjacent)."""
    trials: list[Trial] = []
    for algo in spec.algorithms:
        for point, task in itertools.product(algo.grid_points(), tasks or spec.tasks):
            for seed in spec.seeds:
                trials.append(Trial(stage, spec.run_spec(algo.name, task, seed, point), point))
    return _unique(trials)


def suggestion_trial(spec: SweepSpec, algo: str, task: str, hyperparameters: dict[str, Any], seed_index: int) -> Trial:
    """optuna: the trial of one suggested setting (over the algorithm's fixed hyperparameters) on one seed."""
    point = next(a for a in spec.algorithms if a.name == algo).hyperparameters | hyperparameters
    return Trial("optuna", spec.run_spec(algo, task, spec.seeds[int(seed_index)], point), point)


def tuning_tasks(spec: SweepSpec) -> list[str]:
    """tune-then-broadcast: the default task of every dataset the sweep names."""
    return [info.default_task_name for info in spec.datasets()]


def broadcast_tasks(spec: SweepSpec) -> list[str]:
    """tune-then-broadcast: the named tasks that are not a default task."""
    return [task for task in spec.tasks if not parse_task(task).is_default_task]


def broadcast_trials(spec: SweepSpec, best: dict[tuple[str, str], dict[str, Any]]) -> list[Trial]:
    """The chosen setting of each (algorithm, dataset) on the dataset's other tasks, every seed (only for the
    pairs ``best`` holds a choice for)."""
    trials = []
    for algo in spec.algorithms:
        for task in broadcast_tasks(spec):
            point = best.get((algo.name, parse_task(task).dataset.name))
            if point is not None:
                trials += [
                    Trial("broadcast", spec.run_spec(algo.name, task, seed, point), point) for seed in spec.seeds
                ]
    return _unique(trials)


def _unique(trials: list[Trial]) -> list[Trial]:
    """Drop repeats (e.g. a task named twice through a dataset and a group): a run id is one run."""
    seen: dict[str, Trial] = {}
    for trial in trials:
        seen.setdefault(trial.id, trial)
    return list(seen.values())
