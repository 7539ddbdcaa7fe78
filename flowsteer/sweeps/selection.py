"""Scores and the choice of a setting: every mode and the summary rank settings by one rule.

A trial's score is its report cell's (flowsteer.reports.aggregate.score_run); a setting's score is the mean over
its seeds, and only a setting whose every seed has a score competes (ties go to the setting met first).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from flowsteer.datasets.catalog import parse_task
from flowsteer.sweeps.trials import Trial

GroupBy = Callable[[Trial], Hashable]  # what a setting competes within, e.g. (algorithm, dataset)


def score_trials(trials: list[Trial]) -> dict[str, float]:
    """Each finished trial's score, read once, by the report's own rule: NaN for a trial that is not finished or
    lacks an evaluation of its window."""
    from flowsteer.reports.aggregate import score_run
    from flowsteer.reports.load import ReportError

    scores = {}
    for trial in trials:
        scores[trial.id] = math.nan
        if trial.status() == "finished":
            with contextlib.suppress(ReportError):  # a damaged run scores NaN; its report warns about it
                scores[trial.id] = score_run(trial.spec.run_dir)
    return scores


@dataclass(frozen=True)
class Setting:
    """One setting (algorithm and hyperparameters) in one group: its trials, one per seed, and their scores."""

    trials: tuple[Trial, ...]
    scores: tuple[float, ...]

    @property
    def run_ids(self) -> list[str]:
        return [t.id for t in self.trials]

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.trials[0].spec.hyperparameters

    @property
    def point(self) -> dict[str, Any]:
        """What the sweep chose: the grid point (hyperparameters, and run settings a grid sweeps)."""
        return self.trials[0].point

    @property
    def complete(self) -> bool:
        """Every seed has a score: only then does the setting compete."""
        return not any(math.isnan(s) for s in self.scores)

    @property
    def scored(self) -> list[float]:
        return [s for s in self.scores if not math.isnan(s)]

    @property
    def mean(self) -> float:
        """Mean over the seeds with a score (NaN if none)."""
        return sum(self.scored) / len(self.scored) if self.scored else math.nan

    def describe(self) -> str:
        return self.trials[0].describe()


def settings(trials: list[Trial], scores: dict[str, float], group_by: GroupBy) -> dict[Hashable, list[Setting]]:
    """The trials gathered into settings (trials that differ only in seed) within each group, in trial order."""
    grouped: dict[Hashable, dict[str, list[Trial]]] = {}
    for trial in trials:
        grouped.setdefault(group_by(trial), {}).setdefault(trial.setting, []).append(trial)
    return {
        key: [Setting(tuple(group), tuple(scores.get(t.id, math.nan) for t in group)) for group in by_setting.values()]
        for key, by_setting in grouped.items()
    }


def by_algorithm_and_dataset(trial: Trial) -> tuple[str, str]:
    return trial.spec.algo, parse_task(trial.spec.task).dataset.name


def by_algorithm_and_task(trial: Trial) -> tuple[str, str]:
    return trial.spec.algo, trial.spec.task


def best_settings(trials: list[Trial], scores: dict[str, float], group_by: GroupBy) -> dict[Hashable, Setting | None]:
    """Per group, the setting with the best mean score over seeds among those whose every seed has a score; ties
    go to the earlier setting. None for a group where no setting competes."""
    return {
        key: max((s for s in candidates if s.complete), key=lambda s: s.mean, default=None)  # max keeps the first
        for key, candidates in settings(trials, scores, group_by).items()
    }
