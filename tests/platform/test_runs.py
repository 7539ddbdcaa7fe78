"""Offline-to-online runs of every algorithm: the run directory and the MLflow run they leave behind."""

from __future__ import annotations

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import run
from flowsteer.rundir import RunDirectory

pytestmark = pytest.mark.integration  # real offline-to-online runs of every algorithm

ALGOS = ["bc", "iql", "rebrac", "ifql", "idql", "fql"]


@pytest.mark.parametrize("algo", ALGOS)
def test_an_offline_to_online_run_writes_its_files_and_its_mlflow_run(make_spec, algo: str) -> None:
    spec = make_spec(algo, online_steps=60)
    result = run(spec, progress=False)
    assert result.status == "finished" and result.step == 120

    files = RunDirectory(result.run_dir)
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "protocol.json", "train.csv", "eval.csv", "status.json", "checkpoints"} <= names

    train = files.rows("train.csv")
    assert [int(r["step"]) for r in train] == [20, 40, 60, 80, 100, 120]
    assert all(math.isfinite(v) for row in train for v in row.values())
    evals = files.rows("eval.csv")
    assert [int(r["step"]) for r in evals] == [60, 120]
    assert all(r["episodes"] == 2 and r["success"] in (0.0, 0.5, 1.0) for r in evals)  # 2 episodes' 0/1 mean

    protocol = json.loads((result.run_dir / "protocol.json").read_text())
    assert protocol["dataset"]["source"] == "generated"
    assert protocol["dataset"]["generator"]["episodes"] == 4
    assert protocol["evaluation"]["steps"] == [60, 120]
    assert protocol["setting"] == "offline-to-online"
    assert protocol["unsourced_preset"] is None  # cube-single: every preset value has a source
    assert set(protocol["versions"]) >= {"jax", "flax", "ogbench", "flowsteer"}
    if algo == "idql":  # the cosine LR decay spans the run's 60 + 60 updates, recorded with the config
        assert protocol["algo_config"]["actor_lr_decay_steps"] == 120
    assert json.loads((result.run_dir / "status.json").read_text())["state"] == "finished"
    final = checkpoint.latest(files.checkpoints)
    assert final is not None and json.loads((final / "meta.json").read_text())["step"] == 120

    client = MlflowClient(spec.resolved_tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.run_name for r in runs] == [spec.run_id]
    mlflow_run = runs[0]
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["run.algo"] == algo
    history = client.get_metric_history(mlflow_run.info.run_id, "evaluation/success")
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), r["success"]) for r in evals]
    some_loss = next(k for k in train[0] if k != "step")
    assert len(client.get_metric_history(mlflow_run.info.run_id, f"training/{some_loss}")) == 6
    assert mlflow_run.info.artifact_uri.startswith(f"file://{spec.run_dir.parent.parent}")


def test_a_finished_run_is_not_run_again(make_spec) -> None:
    spec = make_spec("bc")
    first = run(spec, progress=False)
    before = (first.run_dir / "eval.csv").read_text()
    again = run(spec, progress=False)
    assert again.status == "finished" and again.seconds == 0.0
    assert (first.run_dir / "eval.csv").read_text() == before
