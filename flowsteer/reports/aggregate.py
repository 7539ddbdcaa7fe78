"""Aggregation exactly as the FQL and OGBench papers do it (FQL paper Sec. 5.1 and App. B;
docs/algorithms.md#reporting-protocol).

1. Per run: the mean success (in %) over the last k evaluation steps of the run's schedule (k = 3 for
   OGBench, 1 for "the last evaluation"). Offline-to-online runs give two values: at the end of the
   offline phase (step offline_steps) and at the final step, shown "x -> y".
2. Per task: mean and std over seeds (std with ``ddof``, recorded in every output).
3. Per category: for each seed, the mean over the category's five tasks; then mean and std over seeds.
   A seed that lacks a task is left out of the category and flagged, never averaged over silently.
4. Bold: a cell is bold when its unrounded mean is at or above 95% of the row's best (see ``mark_bold``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flowsteer.datasets.catalog import get_dataset
from flowsteer.reports.load import PROTOCOL_SETTINGS, ReportError, ReportWarning, SkippedRun, read_run

OFFLINE, ONLINE = "offline", "online"  # the two phases of an offline-to-online cell


@dataclass(frozen=True)
class Aggregation:
    """The parameters of a table; every one of them is printed in the caption and the CSV."""

    last_k: int = 3  # evaluations averaged per run (OGBench: last 3; D4RL: last 1)
    ddof: int = 0  # std over seeds; the FQL paper does not say, CORL and OfflineRL-Kit use np.std (ddof 0)
    bold_fraction: float = 0.95  # bold at or above this fraction of the row's best
    metric: str = "success"  # eval.csv column
    scale: float = 100.0  # success fraction -> %

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


PAPER = Aggregation()  # the FQL paper's OGBench protocol


def method_labels(runs: pd.DataFrame) -> pd.Series:
    """The column a run belongs to: its algorithm, plus what differs within its (algorithm, task, setting):
    hyperparameters, and protocol settings (budget, evaluation) that change what a run measures. Runs that differ
    in a protocol setting are never averaged into one cell; a ReportWarning says which were split."""
    labels = runs["algorithm"].copy()
    for (algorithm, task, _), group in runs.groupby(["algorithm", "task", "setting"]):
        described = {i: _description(group.loc[i]) for i in group.index}
        keys = sorted({k for d in described.values() for k in d})
        varying = [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in described.values()}) > 1]
        if not varying:
            continue
        for i, description in described.items():
            detail = ", ".join(f"{k}={description.get(k)}" for k in varying)
            labels[i] = f"{algorithm} ({detail})"
        split = [k for k in varying if k in PROTOCOL_SETTINGS]
        if split:
            values = "; ".join(f"{k} {sorted({d.get(k) for d in described.values()})}" for k in split)
            warnings.warn(f"{algorithm} on {task}: runs differ in {values}; they are shown as separate columns, "
                          "never averaged together.", ReportWarning, stacklevel=3)  # fmt: skip
    return labels


def _description(run: pd.Series) -> dict:
    """What makes a run's column: its hyperparameter overrides and its protocol settings."""
    return json.loads(run["hyperparameters"]) | {k: int(run[k]) for k in PROTOCOL_SETTINGS if k in run}


def check_unique_seeds(scores: pd.DataFrame) -> None:
    """A cell counts each seed once: two runs of one seed in one column are refused, never averaged."""
    runs = scores.drop_duplicates("run")
    for (method, task, setting, seed), group in runs.groupby(["method", "task", "setting", "seed"]):
        if len(group) > 1:
            raise ReportError(
                f"{method} on {task} ({setting}) has seed {seed} in {len(group)} runs: {', '.join(group['run'])}. "
                f"They differ only in settings that do not name a column (log, checkpoint or chunk intervals?); "
                f"keep one of them in the report's folder."
            )


def run_scores(tidy: pd.DataFrame, agg: Aggregation = PAPER) -> pd.DataFrame:
    """One row per (run, phase): the run's score in the table's unit, or NaN with a reason when incomplete."""
    metric = tidy[tidy["metric"] == agg.metric]
    if metric.empty:
        raise ReportError(f"No evaluation rows with metric {agg.metric!r}; eval.csv files lack that column.")
    run_columns = ["run", "algorithm", "variant", "task", "dataset", "category", "default_task", "seed"]
    run_columns += ["hyperparameters"]
    run_columns += ["setting", *PROTOCOL_SETTINGS, "eval_steps", "status", "provenance"]
    runs = metric.drop_duplicates("run").set_index("run")[run_columns[1:]]
    values = {run: dict(zip(g["step"], g["value"], strict=True)) for run, g in metric.groupby("run")}
    rows = []
    for run, info in runs.iterrows():
        scheduled = json.loads(info["eval_steps"])
        if info["setting"] == "offline-to-online":
            end = info["offline_steps"] + info["online_steps"]
            # An online-only run (RLPD) has no offline phase to score: its cell shows only the online value.
            windows = {OFFLINE: [info["offline_steps"]]} if info["offline_steps"] > 0 else {}
            windows[ONLINE] = [end]
        else:
            windows = {OFFLINE: [s for s in scheduled if s <= info["offline_steps"]][-agg.last_k :]}
        for phase, window in windows.items():
            missing = [s for s in window if s not in values[run]]
            # A run that stopped early says how (a seed of a group diverged while the others went on, say).
            stopped = "" if info["status"] in ("finished", "running") else f" ({info['status']})"
            reason = f"{run}{stopped}: no evaluation at step(s) {', '.join(map(str, missing))}" if missing else ""
            if len(window) < agg.last_k and info["setting"] != "offline-to-online":
                reason = f"{run}: {len(window)} evaluation(s) scheduled, fewer than the last {agg.last_k} averaged"
            score = np.nan if reason else agg.scale * float(np.mean([values[run][s] for s in window]))
            window_text = json.dumps(window)
            rows.append({"run": run, **info.to_dict(), "phase": phase, "window": window_text, "score": score})
            rows[-1]["incomplete"] = reason
    scores = pd.DataFrame(rows)
    scores["method"] = method_labels(scores)
    return scores


def score_run(run_dir: Path, agg: Aggregation = PAPER) -> float:
    """A run's score exactly as its report cell counts it: the final phase (online for offline-to-online runs),
    NaN when the run lacks an evaluation of its window. A sweep chooses settings by this number."""
    try:
        tidy = read_run(run_dir)
    except SkippedRun as exc:
        raise ReportError(str(exc)) from None
    return float(run_scores(tidy, agg)["score"].iloc[-1])


def check_provenance(scores: pd.DataFrame, keys: list[str]) -> None:
    """Refuse to put runs of different dataset provenance or package versions into one cell."""
    for cell, group in scores.groupby(keys):
        kinds = group.drop_duplicates("run").groupby("provenance")["run"].apply(sorted)
        if len(kinds) > 1:
            detail = "; ".join(f"[{prov}] runs {', '.join(runs)}" for prov, runs in kinds.items())
            raise ReportError(
                f"Cell {dict(zip(keys, cell, strict=True))} mixes runs of different provenance: {detail}. "
                f"Report them from separate folders, or rerun them on the same data and versions."
            )


def _mean_std(values: np.ndarray, ddof: int) -> tuple[float, float]:
    if len(values) == 0:
        return np.nan, np.nan
    std = float(np.std(values, ddof=ddof)) if len(values) > ddof else np.nan
    return float(np.mean(values)), std


def _expected_seeds(scores: pd.DataFrame) -> dict[str, set[int]]:
    """Seeds a cell should have: every seed any run of the same setting has."""
    return {setting: set(g["seed"]) for setting, g in scores.groupby("setting")}


def _base_flags(group: pd.DataFrame, expected: set[int], seeds: set[int]) -> list[str]:
    """Seeds that other cells have and this one lacks; runs without their evaluation window."""
    flags = [f"missing seeds {', '.join(map(str, sorted(expected - seeds)))}"] if expected - seeds else []
    return flags + [f"incomplete run {r}" for r in group.loc[group["incomplete"] != "", "incomplete"]]


def _cell(layout: str, row: str, group: pd.DataFrame, per_seed: pd.Series, flags: list[str], agg: Aggregation) -> dict:
    """One cell: mean and std of ``per_seed`` (indexed by seed), with the facts every output carries."""
    mean, std = _mean_std(per_seed.to_numpy(), agg.ddof)
    first = group.iloc[0]
    return {
        "layout": layout,
        "row": row,
        "category": first["category"],
        "default_task": layout == "task" and bool(first["default_task"]),
        "method": first["method"],
        "algorithm": first["algorithm"],
        "setting": first["setting"],
        "phase": first["phase"],
        "action_chunk": int(first["action_chunk"]),  # what a published number must match (published.py)
        "sparse_reward": int(first["sparse_reward"]),
        "mean": mean,
        "std": std,
        "ddof": agg.ddof,
        "n_seeds": len(per_seed),
        "seeds": " ".join(map(str, sorted(per_seed.index))),
        "flags": "; ".join(flags),
        "provenance": first["provenance"],
    }


def task_cells(scores: pd.DataFrame, agg: Aggregation = PAPER) -> pd.DataFrame:
    """Per (method, task, setting, phase): mean and std over seeds, with flags for missing seeds or runs."""
    check_provenance(scores, ["method", "task", "setting"])
    check_unique_seeds(scores)
    expected = _expected_seeds(scores)
    rows = []
    for (_, task, setting, _), group in scores.groupby(["method", "task", "setting", "phase"]):
        done = group[group["incomplete"] == ""].set_index("seed")["score"]
        flags = _base_flags(group, expected[setting], set(group["seed"]))
        rows.append(_cell("task", task, group, done, flags, agg))
    return mark_bold(pd.DataFrame(rows), agg)


def category_cells(scores: pd.DataFrame, agg: Aggregation = PAPER) -> pd.DataFrame:
    """Per (method, category, setting, phase): each seed's mean over the five tasks, then mean and std over seeds."""
    check_provenance(scores, ["method", "category", "setting"])
    check_unique_seeds(scores)
    expected = _expected_seeds(scores)
    rows = []
    for (_, category, setting, _), group in scores.groupby(["method", "category", "setting", "phase"]):
        done = group[group["incomplete"] == ""]
        per_seed = done.pivot_table(index="seed", columns="task", values="score", aggfunc="mean")
        per_seed = per_seed.reindex(index=sorted(set(group["seed"])), columns=get_dataset(category).task_names)
        flags = _base_flags(group, expected[setting], set(group["seed"]))
        for seed, row in per_seed[per_seed.isna().any(axis=1)].iterrows():
            lacking = [t.split("-singletask-")[1].removesuffix("-v0") for t in row[row.isna()].index]
            flags.append(f"seed {seed} lacks {', '.join(lacking)} (left out)")
        rows.append(_cell("category", category, group, per_seed.dropna().mean(axis=1), flags, agg))
    return mark_bold(pd.DataFrame(rows), agg)


def mark_bold(cells: pd.DataFrame, agg: Aggregation = PAPER) -> pd.DataFrame:
    """Bold each cell whose unrounded mean is at or above ``bold_fraction`` of its row's best.

    - Ties: every cell equal to the best is bold.
    - All-zero rows: the rule taken literally (0 >= 0.95 x 0) bolds every cell; we keep that, as the papers do.
    - Negative bests (normalised returns): the threshold is best - 5% of |best|, so the best is always bold.
    - Offline-to-online cells are bolded on their final (online) value; a NaN cell (no complete seed) never is.
    - Published numbers are never part of the row and never bold.
    A relative tolerance of 1e-9 absorbs float error at exactly 95% (0.95 x 80 is 76 on paper).
    """
    cells = cells.copy()
    cells["bold"] = False
    final = cells["phase"] == np.where(cells["setting"] == "offline-to-online", ONLINE, OFFLINE)
    for _, group in cells[final].groupby(["layout", "row", "setting"]):
        best = group["mean"].max()
        if np.isnan(best):
            continue
        threshold = best - (1 - agg.bold_fraction) * abs(best) - 1e-9 * max(1.0, abs(best))
        bold_methods = set(group.loc[group["mean"] >= threshold, "method"])
        same_row = (cells["layout"] == group["layout"].iat[0]) & (cells["row"] == group["row"].iat[0])
        same_row &= cells["setting"] == group["setting"].iat[0]
        cells.loc[same_row & cells["method"].isin(bold_methods), "bold"] = True
    return cells
