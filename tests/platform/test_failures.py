"""Divergence stops a run with a clear error and a good checkpoint; MLflow outages lose nothing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flowsteer.algorithms import rebrac, registry
from flowsteer.platform import checkpoint
from flowsteer.platform.loop import RunDiverged, run
from flowsteer.rundir import RunDirectory

pytestmark = pytest.mark.integration  # real runs and a `flowsteer sync` subprocess

NAN_FROM_STEP = 45


def _inject_nan_from(step: int, algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the real update of `algo` return NaN parameters from update `step` on (a fault injection)."""
    real = registry.ALGORITHMS[algo]

    def update(config, state, batch):
        new_state, metrics = real.update(config, state, batch)
        poison = jnp.where(state.step >= step, jnp.nan, 1.0)
        params = jax.tree_util.tree_map(lambda p: p * poison, new_state.params)
        return new_state.replace(params=params), {
            **metrics,
            "critic/critic_loss": metrics["critic/critic_loss"] * poison,
        }

    monkeypatch.setitem(registry.ALGORITHMS, algo, dataclasses.replace(real, update=update))


def test_a_nan_stops_the_run_with_a_clear_error_and_keeps_the_last_good_checkpoint(make_spec, monkeypatch) -> None:
    _inject_nan_from(NAN_FROM_STEP, "fql", monkeypatch)
    spec = make_spec("fql", offline_steps=100, checkpoint_interval=20, chunk_size=10, log_interval=10)
    with pytest.raises(RunDiverged) as error:
        run(spec, progress=False)
    message = str(error.value)
    assert "diverged between steps 40 and 50" in message
    assert "critic/critic_loss" in message and "step_000000040" in message

    status = json.loads((spec.run_dir / "status.json").read_text())
    assert status["state"] == "diverged" and status["step"] == 40
    good = checkpoint.latest(spec.run_dir / "checkpoints")
    assert good.name == "step_000000040"
    with np.load(good / "arrays.npz") as arrays:
        assert all(np.isfinite(arrays[k]).all() for k in arrays.files if arrays[k].dtype.kind == "f")
    rows = [int(r.split(",")[0].split(".")[0]) for r in (spec.run_dir / "train.csv").read_text().splitlines()[1:]]
    assert rows == [10, 20, 30, 40], "nothing from the diverged chunk is logged"


def test_a_rebrac_run_logs_nan_for_the_actor_metrics_of_critic_only_steps(make_spec) -> None:
    """ReBRAC updates its actor on every second update: rows logged after a critic-only update hold NaN actor
    metrics (never a 0.0 loss), the run does not take them for divergence, and MLflow receives no value there."""
    spec = make_spec("rebrac", log_interval=15, chunk_size=15)
    result = run(spec, progress=False)
    assert result.status == "finished"
    rows = {int(r["step"]): r for r in RunDirectory(result.run_dir).rows("train.csv")}
    assert sorted(rows) == [15, 30, 45, 60]
    for step, row in rows.items():
        critic_only = step % 2 == 1
        assert all(np.isnan(row[name]) == critic_only for name in rebrac.ACTOR_METRICS), step
        assert np.isfinite(row["critic/critic_loss"])
    client = MlflowClient(spec.resolved_tracking_uri())
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    history = client.get_metric_history(mlflow_run.info.run_id, "training/actor/actor_loss")
    assert sorted(m.step for m in history) == [30, 60]


def test_a_nan_in_a_loss_stops_a_rebrac_run(make_spec, monkeypatch) -> None:
    _inject_nan_from(NAN_FROM_STEP, "rebrac", monkeypatch)
    spec = make_spec("rebrac", offline_steps=100, checkpoint_interval=20, chunk_size=10, log_interval=10)
    with pytest.raises(RunDiverged, match="diverged between steps 40 and 50"):
        run(spec, progress=False)


def test_metrics_survive_an_unreachable_tracking_store_and_sync_later(make_spec, tmp_path) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's directory should be: the store cannot be opened")
    store = blocker / "mlflow.db"
    spec = make_spec("bc", tracking_uri=f"sqlite:///{store}")
    result = run(spec, progress=False)
    assert result.status == "finished"
    evals = RunDirectory(result.run_dir).rows("eval.csv")
    assert [int(r["step"]) for r in evals] == [60]
    assert "mlflow_run_id" not in json.loads((result.run_dir / "tracking.json").read_text())

    blocker.unlink()  # the store comes back
    store.parent.mkdir()
    synced = subprocess.run(
        [sys.executable, "-m", "flowsteer", "sync", str(result.run_dir)], capture_output=True, text=True, timeout=120
    )
    assert synced.returncode == 0 and "in sync" in synced.stdout, synced.stderr
    client = MlflowClient(f"sqlite:///{store}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert mlflow_run.info.run_name == spec.run_id
    synced_success = client.get_metric_history(mlflow_run.info.run_id, "evaluation/success")
    assert [(m.step, m.value) for m in synced_success] == [(60, evals[0]["success"])]
    assert mlflow_run.data.params["run.algo"] == "bc"
