"""The category rule reproduces the FQL paper's own category row from its per-task rows.

FQL paper, antmaze-large-navigate, FQL (Table 3; docs/algorithms.md#reporting-protocol): tasks 1-5 are 80±8, 57±10,
93±3, 80±4, 83±4 and the Table 2 row is 79±3 (in the shipped published.csv). With 8 seeds whose per-task deviations
are uncorrelated across tasks (columns of an 8x8 Hadamard matrix: zero mean, unit std, mutually orthogonal), each
task's mean and std are the paper's exactly, and the per-seed category mean has std sqrt(Σσ²)/5 = 2.86. The category
rule must give 79±3; the wrong rule (mean of the task stds) would give ±6.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowsteer.reports.aggregate import Aggregation, category_cells, run_scores, task_cells
from flowsteer.reports.load import load_runs
from flowsteer.reports.published import published

MEANS = [80, 57, 93, 80, 83]
STDS = [8, 10, 3, 4, 4]
TASK = "antmaze-large-navigate-singletask-task{}-v0"


def _hadamard(n: int) -> np.ndarray:
    h = np.array([[1]])
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def test_per_seed_category_means_reproduce_the_fql_papers_antmaze_large_row(write_run, tmp_path):
    deviations = _hadamard(8)[:, 1:6]  # seeds x tasks, each column ±1 with mean 0
    for t, (mean, std) in enumerate(zip(MEANS, STDS, strict=True)):
        for seed in range(8):
            success = float(mean + std * deviations[seed, t]) / 100
            write_run("fql", TASK.format(t + 1), seed, {800: success, 900: success, 1000: success})
    scores = run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=3))

    tasks = task_cells(scores).set_index("row")
    assert [round(tasks.at[TASK.format(t), "mean"]) for t in range(1, 6)] == MEANS
    assert [round(tasks.at[TASK.format(t), "std"]) for t in range(1, 6)] == STDS

    paper = published()
    row = paper[(paper["layout"] == "category") & (paper["row"] == "antmaze-large-navigate")]
    row = row[row["algorithm"] == "FQL"].iloc[0]
    assert (row["mean"], row["std"]) == (79.0, 3.0)

    category = category_cells(scores).iloc[0]
    assert category["std"] == pytest.approx(np.sqrt(sum(s * s for s in STDS)) / 5)
    assert (round(category["mean"]), round(category["std"])) == (row["mean"], row["std"])
    assert round(np.mean(STDS)) != row["std"]  # the mean of task stds (5.8) is not the paper's rule
