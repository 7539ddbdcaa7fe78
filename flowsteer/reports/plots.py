"""Learning curves: success (%) against step per task, mean over seeds with a 95% bootstrap band.

One figure per category (a panel per task, a line per method), written as PNG and PDF. The band is the
percentile interval of the seed mean under resampling seeds with replacement (the FQL paper's plots show
95% bootstrap intervals, its Sec. 5.1), with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no backend, no global state

from flowsteer.reports.aggregate import method_labels


def curve_band(values: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [seeds x steps] -> mean, lower and upper 95% bootstrap bounds per step (NaN-free input)."""
    rng = np.random.default_rng(seed)
    seeds = values.shape[0]
    means = values[rng.integers(0, seeds, size=(reps, seeds))].mean(axis=1)  # reps x steps
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return values.mean(axis=0), low, high


def curves(tidy: pd.DataFrame, metric: str = "success", scale: float = 100.0) -> pd.DataFrame:
    """Per (category, task, method, step): seed count, mean and 95% band, over the seeds that have that step."""
    data = tidy[tidy["metric"] == metric].copy()
    labels = method_labels(data.drop_duplicates("run").set_index("run"))
    data["method"] = data["run"].map(labels)
    rows = []
    for (category, task, method), group in data.groupby(["category", "task", "method"]):
        table = group.pivot_table(index="seed", columns="step", values="value", aggfunc="last") * scale
        steps = [s for s in table.columns if table[s].notna().all()]
        if not steps:
            continue
        mean, low, high = curve_band(table[steps].to_numpy())
        for i, step in enumerate(steps):
            rows.append(
                {
                    "category": category,
                    "task": task,
                    "method": method,
                    "step": step,
                    "seeds": len(table),
                    "mean": mean[i],
                    "low": low[i],
                    "high": high[i],
                }
            )
    return pd.DataFrame(rows)


def plot_learning_curves(tidy: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per category, PNG and PDF; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    data = curves(tidy)
    written = []
    for category, group in data.groupby("category"):
        tasks = sorted(group["task"].unique())
        fig = Figure(figsize=(3.2 * len(tasks), 2.8))
        axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)
        for ax, task in zip(axes[0], tasks, strict=True):
            for method, line in group[group["task"] == task].groupby("method"):
                ax.plot(line["step"], line["mean"], label=f"{method} ({line['seeds'].iat[0]} seeds)")
                ax.fill_between(line["step"], line["low"], line["high"], alpha=0.2)
            ax.set_title(task.split("-singletask-")[1].removesuffix("-v0"))
            ax.set_xlabel("step")
            ax.set_ylim(-2, 102)
        axes[0][0].set_ylabel("success (%)")
        axes[0][-1].legend(fontsize="small")
        fig.suptitle(f"{category}: mean over seeds, 95% bootstrap interval")
        fig.tight_layout()
        for suffix in ("png", "pdf"):
            path = out / f"curves-{category}.{suffix}"
            fig.savefig(path, dpi=120)
            written.append(path)
    return written


def plot_performance_profiles(profiles: pd.DataFrame, out: Path, name: str = "profiles") -> list[Path]:
    """Fraction of runs with score > τ against τ, a line and its 95% band per method (stats.performance_profiles)."""
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.subplots()
    for method, line in profiles.groupby("method"):
        ax.plot(line["tau"], line["fraction"], label=method)
        ax.fill_between(line["tau"], line["ci_low"], line["ci_high"], alpha=0.2)
    ax.set_xlabel("success (%) threshold τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    fig.tight_layout()
    written = []
    for suffix in ("png", "pdf"):
        path = out / f"{name}.{suffix}"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written
