"""The three ways a sweep runs its trials, behind one interface; ``mode_of`` picks one from the sweep file.

grid                 every algorithm x grid point x task x seed.
tune-then-broadcast  the grid on each dataset's default task, then the best setting per (algorithm, dataset) on
                     the dataset's other tasks (the papers' protocol; README.md, "Sweeps").
optuna               one Optuna search per (algorithm, task); each suggestion runs every seed.

Every mode runs its trials in seed groups of up to ``seeds_per_trial`` (one Ray Tune trial each; trials.py).

A mode is used in this order: ``unfinished`` (before launch, to refuse an interrupted sweep without --resume),
``all_done`` (nothing to launch: no cluster starts), ``launch`` (on the cluster; fills ``trials``), then
``final_runs`` and ``tuning_runs`` for the reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from flowsteer.rundir import read_json, write_json_atomic
from flowsteer.sweeps import selection, tune_runner
from flowsteer.sweeps.spec import SweepSpec, split_point
from flowsteer.sweeps.trainable import group_of
from flowsteer.sweeps.trials import (
    FINAL_STATES,
    Trial,
    broadcast_tasks,
    broadcast_trials,
    grid_trials,
    group_trials,
    grouping_note,
    tuning_tasks,
)

Writer = Callable[[str], None]
Choice = dict[tuple[str, str], dict[str, Any]]  # (algorithm, dataset) -> grid point (hyperparameters, run axes)


class SweepIncomplete(RuntimeError):
    """A stage of the sweep ended without what the next stage needs (exit code 1, as unfinished trials)."""


class SweepMode(ABC):
    """One mode of a sweep: what it would launch, what an earlier start left unfinished, how it runs, and which
    runs are its result."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.trials: list[Trial] = []  # every trial so far (after a failed stage too, for the summary)
        self.selection: dict[str, Any] = {}  # what the mode chose, as recorded in selection.json

    @abstractmethod
    def plan(self, write: Writer) -> None:
        """The dry run: what would be launched, with each trial's id and current state."""

    @abstractmethod
    def unfinished(self) -> list[str]:
        """The trials (or searches) of every stage that an earlier start left stopped or failed."""

    def all_done(self) -> bool:
        """Every trial is done already, so no cluster starts (and ``trials`` holds them). Only a grid tells before
        launch; the other modes skip their done trials on the cluster."""
        return False

    @abstractmethod
    def launch(self, resume: bool, write: Writer) -> None:
        """Run every stage on the connected cluster, filling ``trials`` as they are known."""

    @abstractmethod
    def final_runs(self, scores: dict[str, float]) -> list[str]:
        """Run ids of the sweep's result (the report's tables)."""

    def tuning_runs(self) -> list[str]:
        """Run ids of every tried setting, reported beside the result (none when everything is the result)."""
        return []


def mode_of(spec: SweepSpec) -> SweepMode:
    """The mode the sweep file names."""
    modes: dict[str, type[SweepMode]] = {
        "grid": GridMode,
        "tune-then-broadcast": TuneThenBroadcastMode,
        "optuna": OptunaMode,
    }
    return modes[spec.mode](spec)


class GridMode(SweepMode):
    def plan(self, write: Writer) -> None:
        _plan_trials(self.spec, "grid", grid_trials(self.spec), write)

    def unfinished(self) -> list[str]:
        return _stopped(grid_trials(self.spec))

    def all_done(self) -> bool:
        self.trials = grid_trials(self.spec)
        return all(t.status() in FINAL_STATES for t in self.trials)

    def launch(self, resume: bool, write: Writer) -> None:
        self.trials = grid_trials(self.spec)
        tune_runner.run_trials(self.spec, "grid", self.trials, write)

    def final_runs(self, scores: dict[str, float]) -> list[str]:
        return [t.id for t in self.trials]


class TuneThenBroadcastMode(SweepMode):
    def plan(self, write: Writer) -> None:
        spec = self.spec
        _plan_trials(spec, "tune", self._tuned(), write)
        broadcast = len(broadcast_tasks(spec)) * len(spec.seeds) * len(spec.algorithms)
        write(f"  then the best setting per (algorithm, dataset) on {len(broadcast_tasks(spec))} other task(s) x "
              f"{len(spec.seeds)} seed(s): {broadcast} broadcast trial(s)")  # fmt: skip

    def unfinished(self) -> list[str]:
        return _stopped(self._tuned() + broadcast_trials(self.spec, self._recorded_choice()))

    def launch(self, resume: bool, write: Writer) -> None:
        self.trials = tuned = self._tuned()
        tune_runner.run_trials(self.spec, "tune", tuned, write)
        best = self.choose(tuned)
        write_json_atomic(self.spec.directory / "selection.json", self.selection)
        for key, choice in self.selection.items():
            swept = f", run {choice['run']}" if choice.get("run") else ""
            write(f"chosen for {key}: {choice['hyperparameters']}{swept} (score {choice['score']:.1f})")
        broadcast = broadcast_trials(self.spec, best)
        tune_runner.run_trials(self.spec, "broadcast", broadcast, write)
        self.trials = tuned + broadcast

    def final_runs(self, scores: dict[str, float]) -> list[str]:
        chosen = [run for choice in self.selection.values() for run in choice["runs"]]
        return chosen + [t.id for t in self.trials if t.stage == "broadcast"]

    def tuning_runs(self) -> list[str]:
        return [t.id for t in self.trials if t.stage == "tune"]

    def _tuned(self) -> list[Trial]:
        return grid_trials(self.spec, "tune", tuning_tasks(self.spec))

    def choose(self, tuned: list[Trial]) -> Choice:
        """Per (algorithm, dataset), the setting with the best mean score over seeds on the default task; records
        it, with its runs, in ``selection``. SweepIncomplete when a pair has no setting with every seed scored."""
        best = selection.best_settings(tuned, selection.score_trials(tuned), selection.by_algorithm_and_dataset)
        missing = [f"{algo} on {dataset}" for (algo, dataset), setting in best.items() if setting is None]
        if missing:
            raise SweepIncomplete(
                f"tuning did not finish any setting with every seed scored for {', '.join(sorted(missing))}, so "
                f"there is nothing to broadcast; see {self.spec.directory / 'summary.csv'} and rerun with --resume."
            )
        chosen = {key: setting for key, setting in best.items() if setting is not None}
        self.selection = {f"{algo} on {dataset}": _record(algo, dataset, s) for (algo, dataset), s in chosen.items()}
        return {key: setting.point for key, setting in chosen.items()}

    def _recorded_choice(self) -> Choice:
        """The choice an earlier start recorded in selection.json ({} if none)."""
        record = read_json(self.spec.directory / "selection.json", {}) or {}
        return {(c["algo"], c["dataset"]): c["hyperparameters"] | c.get("run", {}) for c in record.values()}


class OptunaMode(SweepMode):
    def plan(self, write: Writer) -> None:
        spec = self.spec
        for algo in spec.algorithms:
            for task in spec.tasks:
                write(f"  optuna {algo.name} on {task}: {spec.optuna.suggestions} suggestions x {len(spec.seeds)} "
                      f"seeds = {spec.optuna.suggestions * len(spec.seeds)} trials{grouping_note(spec)}; "
                      f"space {algo.search}")  # fmt: skip

    def unfinished(self) -> list[str]:
        """Searches begun but not done (their trials resume with their search's Tune state)."""
        searches = (self.spec.directory / "tune").glob("optuna-*")
        return [p.name for p in searches if not (p / "done.json").exists()]

    def launch(self, resume: bool, write: Writer) -> None:
        for algo in self.spec.algorithms:
            for task in self.spec.tasks:
                label = f"optuna-{algo.name}-{task.replace('-singletask', '').replace('-v0', '')}"
                done = read_json(self.spec.directory / "tune" / label / "done.json")
                if done is not None:
                    write(f"{label}: finished earlier ({len(done['configs'])} trials)")
                    configs = done["configs"]
                else:
                    configs = tune_runner.run_search(self.spec, label, algo, task, resume, write)
                    write_json_atomic(self.spec.directory / "tune" / label / "done.json", {"configs": configs})
                self.trials += [t for config in configs for t in group_of(config, self.spec, {}).trials]

    def final_runs(self, scores: dict[str, float]) -> list[str]:
        """Each search's best suggestion, every seed."""
        best = selection.best_settings(self.trials, scores, selection.by_algorithm_and_task)
        return [run for setting in best.values() if setting is not None for run in setting.run_ids]

    def tuning_runs(self) -> list[str]:
        return [t.id for t in self.trials]


def _record(algo: str, dataset: str, setting: selection.Setting) -> dict[str, Any]:
    """selection.json's entry for one (algorithm, dataset): the chosen setting (its hyperparameters, and the run
    settings its grid sweeps, when it sweeps any), its score and its runs."""
    hyperparameters, swept = split_point(algo, setting.point)
    record = {
        "algo": algo,
        "dataset": dataset,
        "score": setting.mean,
        "hyperparameters": hyperparameters,
        "seeds": len(setting.trials),
        "task": setting.trials[0].spec.task,
        "runs": setting.run_ids,
    }
    return record | ({"run": swept} if swept else {})


def _stopped(trials: list[Trial]) -> list[str]:
    """Trials an earlier start began and did not bring to a final state."""
    return [t.id for t in trials if t.status() not in ("new", *FINAL_STATES)]


def _plan_trials(spec: SweepSpec, stage: str, trials: list[Trial], write: Writer) -> None:
    states = [t.status() for t in trials]
    write(f"  {len(trials)} {stage} trial(s); {states.count('finished')} finished, "
          f"{sum(s not in ('new', 'finished') for s in states)} to resume, {states.count('new')} new"
          f"{grouping_note(spec, len(group_trials(spec, trials)))}")  # fmt: skip
    for trial, state in zip(trials, states, strict=True):
        write(f"  {trial.stage:9s} {trial.id:48s} {state:11s} {trial.describe()}")
