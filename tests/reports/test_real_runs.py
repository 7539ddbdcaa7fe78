"""The reports read what the run loop really writes: two short `flowsteer train` runs, then `flowsteer report`."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from flowsteer.cli import main

pytestmark = pytest.mark.integration  # real `flowsteer train` runs

TASK = "cube-single-play-singletask-task2-v0"


def test_a_report_of_real_runs_matches_their_eval_csv_from_both_sources(tmp_path, smoke_cache, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for seed in ("0", "1"):
        args = [
            "train", "--algo", "bc", "--task", TASK, "--seed", seed, "--offline-steps", "60", "--eval-interval", "20",
            "--eval-episodes", "2", "--eval-envs", "2", "--log-interval", "20", "--chunk-size", "20",
            "--hp", "batch_size=32", "--hp", "actor_hidden_dims=[32, 32]", "--source", "generated",
            "--episodes", "4", "--cache-dir", str(smoke_cache), "--quiet",
        ]  # fmt: skip
        assert main(args) == 0
    per_run = []
    for run in sorted((tmp_path / "runs").iterdir()):
        with open(run / "eval.csv") as handle:
            rows = list(csv.DictReader(handle))
        per_run.append(100 * np.mean([float(r["success"]) for r in rows if float(r["step"]) in (20, 40, 60)]))

    for source, out in ((str(tmp_path / "runs"), "from-dirs"), ("mlflow:flowsteer", "from-mlflow")):
        assert main(["report", source, "--out", str(tmp_path / out), "--format", "csv"]) == 0
        cell = pd.read_csv(tmp_path / out / "report-task.csv").iloc[0]
        assert (cell["row"], cell["method"], cell["n_seeds"], cell["seeds"]) == (TASK, "bc", 2, "0 1")
        assert cell["mean"] == pytest.approx(np.mean(per_run)) and cell["std"] == pytest.approx(np.std(per_run))
        assert pd.isna(cell["flags"])  # nothing flagged
    dirs = pd.read_csv(tmp_path / "from-dirs" / "report-task.csv").iloc[0]
    assert dirs["provenance"].startswith("data=generated generator=")
    assert capsys.readouterr().out.count("| cube-single-play task2 (*) |") == 2  # both reports printed the row
