"""A real grid sweep on a private local Ray cluster: one run directory and one MLflow run per trial."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flowsteer.reports.aggregate import score_run
from flowsteer.rundir import RunDirectory
from flowsteer.sweeps.cluster import local_temp_dir, processes_using
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.trainable import read_attempts

from .conftest import TINY

pytestmark = pytest.mark.integration  # a real sweep on a private Ray cluster


def test_a_grid_of_2_algorithms_x_2_tasks_x_2_seeds_runs_each_trial_once(write_sweep, reaper):
    path = write_sweep(
        "grid",
        algorithms={"bc": {"hyperparameters": TINY["bc"]}, "fql": {"hyperparameters": TINY["fql"]}},
        tasks=["cube-single-play:1,2"],
        seeds=2,
    )
    spec = load_sweep(path)
    reaper.append(local_temp_dir(spec.directory))
    lines: list[str] = []
    outcome = run_sweep(spec, write=lines.append)

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
