"""An MLflow experiment gives the same table as the run directories it mirrors."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from flowsteer.cli import main
from flowsteer.reports.aggregate import Aggregation, run_scores, task_cells
from flowsteer.reports.load import ReportError, ReportWarning, load_runs
from flowsteer.reports.mlflow_source import load_mlflow

TASK = "cube-single-play-singletask-task2-v0"
VALUES = {0: {100: 0.1, 200: 0.5, 300: 0.6}, 1: {100: 0.2, 200: 0.7, 300: 1.0}}


def _log(client: MlflowClient, experiment_id: str, seed: int, values: dict[int, float], run_id: str) -> None:
    tags = {"algo": "fql", "task": TASK, "seed": str(seed), "run_id": run_id, "flowsteer": "run"}
    run = client.create_run(experiment_id, run_name=run_id, tags=tags)
    params = {"run.offline_steps": 300, "run.online_steps": 0, "run.eval_interval": 100, "run.eval_episodes": 50}
    params |= {"run.setting": "offline", "data.source": "official", "algo.alpha": 10}
    metrics = [Metric("evaluation/success", v, 1000 + s, s) for s, v in values.items()]
    metrics.append(Metric("evaluation/success", 0.0, 1, 300))  # an older value at step 300: superseded
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run.info.run_id)


def test_mlflow_runs_aggregate_like_their_run_directories(write_run, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("flowsteer", artifact_location=(tmp_path / "art").as_uri())
    for seed, values in VALUES.items():
        run_dir = write_run("fql", TASK, seed, values)
        _log(client, experiment_id, seed, values, run_dir.name)

    from_mlflow = task_cells(run_scores(load_mlflow(uri, "flowsteer", tmp_path / "cache"), Aggregation(last_k=2)))
    from_dirs = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=2)))
    for column in ("mean", "std", "n_seeds", "seeds", "flags"):
        assert from_mlflow[column].iat[0] == from_dirs[column].iat[0], column
    assert from_mlflow["mean"].iat[0] == pytest.approx((50 + 60 + 70 + 100) / 4)
    assert from_mlflow["provenance"].iat[0] == "data=official versions=not-in-mlflow"
    assert len(list((tmp_path / "cache").glob("mlflow-*.parquet"))) == 1


def test_an_unknown_experiment_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="has no experiment 'nope'"):
        load_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", "nope")


def test_flowsteer_report_reads_an_mlflow_experiment(write_run, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("sweep", artifact_location=(tmp_path / "art").as_uri())
    for seed, values in VALUES.items():
        _log(client, experiment_id, seed, values, f"fql-s{seed}")
    out = tmp_path / "out"
    args = ["report", "mlflow:sweep", "--tracking-uri", uri, "--out", str(out), "--format", "md", "--last-k", "1"]
    assert main(args) == 0
    assert "| cube-single-play task2 (*) | **80 ± 20** |" in (out / "report-task.md").read_text()  # 60, 100


def test_an_mlflow_run_with_an_impossible_schedule_is_left_out_without_building_it(tmp_path):
    # A run of an older flowsteer logged offline_steps=1e30; building its schedule once took 24 GB and minutes.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("mixed", artifact_location=(tmp_path / "art").as_uri())
    _log(client, experiment_id, 0, VALUES[0], "fql-good")
    bad = client.create_run(
        experiment_id,
        run_name="fql-huge",
        tags={"algo": "fql", "task": TASK, "seed": "1", "run_id": "fql-huge", "flowsteer": "run"},
    )
    params = {"run.offline_steps": 10**30, "run.online_steps": 0, "run.eval_interval": 100_000}
    client.log_batch(bad.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    with pytest.warns(ReportWarning, match=r"1 MLflow run\(s\) left out: MLflow run fql-huge: .* beyond what any"):
        table = load_mlflow(uri, "mixed")
    assert set(table["run"]) == {"fql-good"}


def provenance_both_ways(tmp_path, smoke_cache, **fields) -> tuple[str, str]:
    """Run a tiny real run logged to MLflow; its provenance as read from MLflow and from its run directory."""
    from flowsteer.platform.loop import run
    from flowsteer.platform.spec import RunSpec

    spec = RunSpec.from_dict({
        "task": TASK, "eval_episodes": 1, "eval_envs": 1,
        "data": {"source": "generated", "episodes": 4, "episode_steps": 201, "cache_dir": str(smoke_cache)},
        "output_dir": str(tmp_path / "runs"), "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}", "experiment": "x",
    } | fields)  # fmt: skip
    run(spec, progress=False)
    from_mlflow = load_mlflow(spec.resolved_tracking_uri(), "x")["provenance"].iat[0]
    return from_mlflow, load_runs(tmp_path / "runs")["provenance"].iat[0]


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_a_run_logged_with_its_protocol_gets_the_same_provenance_as_its_directory(tmp_path, smoke_cache):
    from_mlflow, from_dirs = provenance_both_ways(
        tmp_path, smoke_cache, algo="bc", offline_steps=40, eval_interval=20, log_interval=20, chunk_size=20,
        hyperparameters={"actor_hidden_dims": [32, 32], "batch_size": 32},
    )  # fmt: skip
    assert from_mlflow == from_dirs and "commit=" in from_dirs and "flax=" in from_dirs


@pytest.mark.integration  # a real DSRL-SAC run steering a torch policy file
def test_a_steered_run_logged_to_mlflow_has_the_provenance_of_its_directory(tmp_path, smoke_cache, torch_policy_file):
    from_mlflow, from_dirs = provenance_both_ways(
        tmp_path, smoke_cache, algo="dsrl_sac", offline_steps=0, online_steps=30, eval_interval=30, log_interval=10,
        hyperparameters={"base_policy": str(torch_policy_file), "warmup_steps": 20, "batch_size": 8,
                         "actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32]},
    )  # fmt: skip
    assert from_mlflow == from_dirs and "base_policy=" in from_dirs
