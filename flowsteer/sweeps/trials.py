"""Trials: a sweep expanded into runs, each with a stable id (its RunSpec's run_id).

The id is a hash of everything that determines a run's results (algorithm, task, seed, hyperparameters,
steps, action chunk, data), so rerunning a sweep finds the run directories it already has: finished trials are skipped,
interrupted ones continue from their last checkpoint, and no trial ever runs twice under two names.

With ``seeds_per_trial: k`` the trials of one setting (they differ only in seed) go into groups of up to k seeds,
in the order of the sweep's seeds, and one Ray Tune trial trains a group in one program (``run_group``). A group
changes how runs are scheduled, never what they are: every seed keeps its run id and run directory.
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


@dataclass(frozen=True)
class TrialGroup:
    """Trials of one setting that one Ray Tune trial trains together; a group of one is an ungrouped trial."""

    trials: tuple[Trial, ...]

    @property
    def id(self) -> str:
        """The Tune trial's name (and its directory under tune/<stage>/): the first seed's run id, with '+N' for N
        more seeds; a group of one is named by its run id, as before groups."""
        first = self.trials[0].id
        return first if len(self.trials) == 1 else f"{first}+{len(self.trials) - 1}"

    def pending(self) -> list[Trial]:
        """Its trials not yet in a final state (finished seeds are skipped, diverged ones not run again)."""
        return [t for t in self.trials if t.status() not in FINAL_STATES]


def seed_groups(spec: SweepSpec) -> list[tuple[int, ...]]:
    """The sweep's seeds in groups of up to seeds_per_trial, in the order of ``seeds`` (ascending for a count)."""
    k = spec.seeds_per_trial
    return [spec.seeds[i : i + k] for i in range(0, len(spec.seeds), k)]


def group_trials(spec: SweepSpec, trials: list[Trial]) -> list[TrialGroup]:
    """The trials in seed groups: trials that differ only in seed whose seeds share a group of ``seed_groups``,
    in seed order; groups in the order of their first trial. The same trials always give the same groups, so a
    resumed sweep finds its groups (and their Tune trials' names) again."""
    position = {seed: i for i, seed in enumerate(spec.seeds)}
    grouped: dict[tuple[str, int], list[Trial]] = {}
    for trial in _unique(trials):
        key = (_all_but_seed(trial.spec), position[trial.spec.seed] // spec.seeds_per_trial)
        grouped.setdefault(key, []).append(trial)
    return [TrialGroup(tuple(sorted(same, key=lambda t: position[t.spec.seed]))) for same in grouped.values()]


def groups_to_run(spec: SweepSpec, trials: list[Trial]) -> list[TrialGroup]:
    """The seed groups of ``trials`` with a seed to run: a group whose seeds are all done is not launched."""
    return [group for group in group_trials(spec, trials) if group.pending()]


def grouping_note(spec: SweepSpec, groups: int | None = None) -> str:
    """How trials are grouped into Ray Tune trials, for the sweep's messages ('' without seed groups); ``groups``
    None: per Optuna suggestion."""
    if spec.seeds_per_trial == 1:
        return ""
    count = f"{groups}" if groups is not None else f"{len(seed_groups(spec))} per suggestion"
    return f", in {count} seed group(s) of up to {spec.seeds_per_trial} (one Ray Tune trial each)"


def _all_but_seed(spec: RunSpec) -> str:
    """What run_group requires its seeds to share: every RunSpec field but the seed."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "seed"}, sort_keys=True, default=str)


def grid_trials(spec: SweepSpec, stage: str = "grid", tasks: list[str] | None = None) -> list[Trial]:
    """Algorithms x grid points x tasks x seeds, in that nesting order (seeds of one setting adjacent)."""
    trials: list[Trial] = []
    for algo in spec.algorithms:
        for point, task in itertools.product(algo.grid_points(), tasks or spec.tasks):
            for seed in spec.seeds:
                trials.append(Trial(stage, spec.run_spec(algo.name, task, seed, point), point))
    return _unique(trials)


def suggestion_group(
    spec: SweepSpec, algo: str, task: str, hyperparameters: dict[str, Any], group_index: int
) -> TrialGroup:
    """optuna: the trials of one suggested setting (over the algorithm's fixed hyperparameters) on one group of
    ``seed_groups`` (with seeds_per_trial 1, on one seed)."""
    point = next(a for a in spec.algorithms if a.name == algo).hyperparameters | hyperparameters
    seeds = seed_groups(spec)[int(group_index)]
    return TrialGroup(tuple(Trial("optuna", spec.run_spec(algo, task, seed, point), point) for seed in seeds))


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
