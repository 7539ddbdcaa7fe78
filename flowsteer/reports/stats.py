"""Statistics beyond the papers' tables: IQM and mean with stratified-bootstrap 95% intervals, performance profiles.

The definitions are rliable's (Agarwal et al., NeurIPS 2021): a method's scores form a matrix [runs x tasks] where
runs are seeds (evaluation episodes are averaged before this step, so that seeds are the replication unit;
docs/algorithms.md#reporting-protocol); the IQM is the mean of the middle 50% of all its entries; a stratified
bootstrap resamples runs with replacement within each task; intervals are percentile intervals; a performance profile
is the fraction of entries above each threshold τ; the probability of improvement P(X > Y) is, per task, the
Mann-Whitney statistic of X's runs against Y's (ties count half), averaged over tasks. The rliable package itself
cannot be installed next to pandas 3 (its dependency arch < 8 breaks on import), so the few lines it needs live here,
with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from flowsteer.reports.aggregate import OFFLINE, ONLINE
from flowsteer.reports.load import ReportError

Aggregate = Callable[[np.ndarray], float]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of every entry: the mean after trimming 25% from each end."""
    return float(stats.trim_mean(scores, proportiontocut=0.25, axis=None))


def mean(scores: np.ndarray) -> float:
    return float(np.mean(scores))


AGGREGATES: dict[str, Aggregate] = {"IQM": iqm, "mean": mean}


def score_matrices(scores: pd.DataFrame, setting: str = "offline") -> tuple[dict[str, np.ndarray], list[str]]:
    """Per method a [seeds x tasks] matrix of final scores over the tasks every method has, complete seeds only."""
    phase = ONLINE if setting == "offline-to-online" else OFFLINE
    done = scores[(scores["setting"] == setting) & (scores["phase"] == phase) & (scores["incomplete"] == "")]
    if done.empty:
        raise ReportError(f"No complete {setting} runs to compute statistics on.")
    tasks = sorted(set.intersection(*(set(g["task"]) for _, g in done.groupby("method"))))
    if not tasks:
        raise ReportError("The methods share no task; statistics compare methods on the same tasks.")
    matrices = {}
    for method, group in done.groupby("method"):
        table = group.pivot_table(index="seed", columns="task", values="score", aggfunc="mean")[tasks].dropna()
        matrices[method] = table.to_numpy()
    return matrices, tasks


def stratified_bootstrap(matrix: np.ndarray, statistic: Aggregate, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` values of ``statistic`` on matrices whose rows are resampled independently within each task."""
    runs, tasks = matrix.shape
    values = np.empty(reps)
    columns = np.arange(tasks)
    for i in range(reps):
        rows = rng.integers(0, runs, size=(runs, tasks))
        values[i] = statistic(matrix[rows, columns])
    return values


def interval_estimates(
    matrices: dict[str, np.ndarray], reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """IQM and mean per method, each with a percentile stratified-bootstrap interval."""
    rows = []
    for method, matrix in sorted(matrices.items()):
        for name, statistic in AGGREGATES.items():
            rng = np.random.default_rng(seed)
            boot = stratified_bootstrap(matrix, statistic, reps, rng)
            low, high = np.percentile(boot, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
            rows.append(
                {
                    "method": method,
                    "statistic": name,
                    "estimate": statistic(matrix),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "confidence": confidence,
                    "runs": matrix.shape[0],
                    "tasks": matrix.shape[1],
                    "reps": reps,
                    "seed": seed,
                }
            )
    return pd.DataFrame(rows)


def performance_profiles(
    matrices: dict[str, np.ndarray],
    thresholds: np.ndarray | None = None,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method and threshold τ: the fraction of (seed, task) scores above τ, with a bootstrap interval."""
    thresholds = np.linspace(0, 100, 21) if thresholds is None else np.asarray(thresholds)
    rows = []
    for method, matrix in sorted(matrices.items()):
        rng = np.random.default_rng(seed)
        runs, tasks = matrix.shape
        samples = [matrix[rng.integers(0, runs, size=(runs, tasks)), np.arange(tasks)] for _ in range(reps)]
        stacked = np.stack(samples)  # reps x runs x tasks
        for tau in thresholds:
            boot = (stacked > tau).mean(axis=(1, 2))
            low, high = np.percentile(boot, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
            rows.append(
                {
                    "method": method,
                    "tau": float(tau),
                    "fraction": float((matrix > tau).mean()),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return pd.DataFrame(rows)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task, the chance a run of X beats a run of Y (ties count half), averaged over tasks."""
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def improvement_estimates(
    matrices: dict[str, np.ndarray], reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """P(X > Y) for every ordered pair of methods, with a stratified-bootstrap interval (both resampled)."""
    rows = []
    for x_name, x in sorted(matrices.items()):
        for y_name, y in sorted(matrices.items()):
            if x_name == y_name:
                continue
            rng = np.random.default_rng(seed)
            tasks = np.arange(x.shape[1])
            boot = [
                probability_of_improvement(
                    x[rng.integers(0, len(x), size=x.shape), tasks], y[rng.integers(0, len(y), size=y.shape), tasks]
                )
                for _ in range(reps)
            ]
            low, high = np.percentile(boot, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
            rows.append(
                {
                    "x": x_name,
                    "y": y_name,
                    "p_x_beats_y": probability_of_improvement(x, y),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "confidence": confidence,
                    "reps": reps,
                    "seed": seed,
                }
            )
    return pd.DataFrame(rows)
