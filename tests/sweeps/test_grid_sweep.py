"""A real grid sweep on a private local Ray cluster: one run directory and one MLflow run per trial; and the same
sweep's seeds in groups (seeds_per_trial) write the same runs."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from flowsteer.reports.aggregate import score_run
from flowsteer.rundir import WALL_TIME, RunDirectory
from flowsteer.sweeps.cluster import local_temp_dir, processes_using
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.trainable import read_attempts

from .conftest import TINY, reap, sweep_file

# A real sweep on a private Ray cluster; its tests share one xdist worker, so that the grid below runs once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("grid-sweep")]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> Iterator[dict[str, Any]]:
    """A grid of 2 algorithms x 2 tasks x 2 seeds, one seed per trial (the default), run once for the module."""
    path = sweep_file(
        tmp_path_factory.mktemp("grid"),
        smoke_cache,
        "grid",
        algorithms={"bc": {"hyperparameters": TINY["bc"]}, "fql": {"hyperparameters": TINY["fql"]}},
        tasks=["cube-single-play:1,2"],
        seeds=2,
    )
    spec = load_sweep(path)
    lines: list[str] = []
    try:
        yield {"path": path, "spec": spec, "outcome": run_sweep(spec, write=lines.append), "lines": lines}
    finally:
        reap([local_temp_dir(spec.directory)])


def test_a_grid_of_2_algorithms_x_2_tasks_x_2_seeds_runs_each_trial_once(grid):
    path, spec, outcome, lines = grid["path"], grid["spec"], grid["outcome"], grid["lines"]
    assert outcome.counts == {"finished": 8}
    run_dirs = sorted(p for p in spec.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in run_dirs] == sorted(t.id for t in outcome.trials)
    for trial in outcome.trials:
        evals = RunDirectory(trial.spec.run_dir).rows("eval.csv")
        assert [int(r["step"]) for r in evals] == [20, 40, 60]
        assert [a["event"] for a in read_attempts(trial.spec.run_dir)] == ["start", "finished"]

    _assert_concurrent_trials_had_their_own_cores([read_attempts(t.spec.run_dir) for t in outcome.trials])

    mlflow.set_tracking_uri(spec.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[spec.name])
    assert sorted(runs["tags.run_id"]) == sorted(t.id for t in outcome.trials)
    assert set(runs["status"]) == {"FINISHED"} and set(runs["tags.sweep"]) == {"grid"}

    summary = pd.read_csv(spec.directory / "summary.csv")
    assert len(summary) == 8 and set(summary["state"]) == {"finished"} and set(summary["attempts"]) == {1}
    table = pd.read_csv(spec.directory / "report" / "report-task.csv")
    assert set(table["method"]) == {"bc", "fql"} and set(table["n_seeds"]) == {2}
    assert any("8/8 done, 0 running, 0 failed" in line for line in lines)
    assert processes_using(local_temp_dir(spec.directory)) == []  # the cluster is gone with the sweep

    # A rerun launches nothing: every trial is done, and none gets a second attempt or MLflow run.
    again = run_sweep(load_sweep(path), write=lines.append)
    assert again.counts == {"finished": 8} and again.cluster is None
    assert "grid: all 8 trial(s) are done already; nothing to launch" in lines
    assert len(mlflow.search_runs(experiment_names=[spec.name])) == 8
    for trial in outcome.trials:
        assert len(read_attempts(trial.spec.run_dir)) == 2
    # Each trial's score in the summary is its run's score by the report's rule (the mean of its last evaluations).
    for row in summary.itertuples():
        assert row.score == score_run(Path(row.run_dir)), row.run_id


def _assert_concurrent_trials_had_their_own_cores(attempts: list[list[dict]]) -> None:
    """Each 1-CPU trial ran pinned to one core, and two trials that ran at the same time never shared one."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("core pinning needs 2 cores: on 1 core a 1-CPU trial is the whole node and is not pinned")
    spans = [(a[0]["time"], a[-1]["time"], a[0]["cores"]) for a in attempts]
    assert all(len(cores) == 1 for _, _, cores in spans), spans
    overlapping = [(x, y) for i, x in enumerate(spans) for y in spans[i + 1 :] if x[0] < y[1] and y[0] < x[1]]
    assert overlapping, "the sweep ran its trials one at a time; pinning was not exercised"
    assert all(x[2] != y[2] for x, y in overlapping), overlapping


# The report's cell of a run set: every column but those that depend on the other methods of the table (bold).
CELL_COLUMNS = ["row", "method", "algorithm", "setting", "phase", "mean", "std", "ddof", "n_seeds", "seeds", "flags"]
# vmap over seeds may change float rounding (about 1e-7 on CPU: XLA fuses a batched update differently), so a
# grouped seed's evaluations are compared to a tolerance well above that; success rates and returns over whole
# episodes are equal unless a rounding difference changes an action enough to change an episode.
EVAL_TOLERANCE = 1e-5


def test_seeds_per_trial_2_writes_the_same_run_directories_and_report_cells(grid, tmp_path, smoke_cache, reaper):
    # The ungrouped grid's bc on task 1, both seeds, as one seed group: one Ray Tune trial trains the two seeds.
    path = sweep_file(tmp_path, smoke_cache, "grouped", algorithms={"bc": {"hyperparameters": TINY["bc"]}},
                      tasks=["cube-single-play:1"], seeds=2, seeds_per_trial=2)  # fmt: skip
    spec = load_sweep(path)
    reaper.append(local_temp_dir(spec.directory))
    lines: list[str] = []
    outcome = run_sweep(spec, write=lines.append)

    assert outcome.counts == {"finished": 2}
    ungrouped = {t.id: t for t in grid["outcome"].trials}
    run_dirs = sorted(p.name for p in spec.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert run_dirs == sorted(t.id for t in outcome.trials) and set(run_dirs) <= set(ungrouped)
    first = min(outcome.trials, key=lambda t: t.spec.seed)
    assert [p.name for p in (spec.directory / "tune" / "grid").iterdir() if p.is_dir()] == [f"{first.id}+1"]
    attempts = [read_attempts(t.spec.run_dir) for t in outcome.trials]
    assert [[a["event"] for a in seed] for seed in attempts] == [["start", "finished"]] * 2
    assert attempts[0][0]["pid"] == attempts[1][0]["pid"]  # one program trained both seeds
    assert any("2/2 done, 0 running, 0 failed" in line for line in lines)  # progress counts runs, not Tune trials

    def cells(directory: Path) -> pd.DataFrame:
        table = pd.read_csv(directory / "report" / "report-task.csv", dtype=str, keep_default_na=False)
        own = table[(table["kind"] == "flowsteer") & (table["method"] == "bc") & (table["row"] == first.spec.task)]
        return own[CELL_COLUMNS].reset_index(drop=True)

    assert len(cells(spec.directory)) == 1
    pd.testing.assert_frame_equal(cells(spec.directory), cells(grid["spec"].directory))
    for trial in outcome.trials:
        grouped_evals = RunDirectory(trial.spec.run_dir).rows("eval.csv")
        alone = RunDirectory(ungrouped[trial.id].spec.run_dir).rows("eval.csv")
        assert [r.keys() for r in grouped_evals] == [r.keys() for r in alone]
        for mine, theirs in zip(grouped_evals, alone, strict=True):
            for key, value in theirs.items():
                if key == WALL_TIME:
                    continue
                assert math.isclose(mine[key], value, rel_tol=EVAL_TOLERANCE, abs_tol=EVAL_TOLERANCE), (key, trial.id)
