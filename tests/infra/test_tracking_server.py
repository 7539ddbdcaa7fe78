"""A team's tracking server, as far as this machine allows: a real `mlflow server` on loopback with a database
backend and basic authentication. A sweep logs to it over HTTP and the report reads it back; wrong credentials
are refused with a clear error before anything starts (sweep, train, report)."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flowsteer.cli import main
from flowsteer.platform.tracking import TrackingAuthError, check_access
from flowsteer.rundir import RunDirectory
from flowsteer.sweeps.cluster import local_temp_dir
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep

from .conftest import _free_port

pytestmark = pytest.mark.integration  # a real `mlflow server` with basic auth


def _login(monkeypatch: pytest.MonkeyPatch, username: str | None, password: str | None) -> None:
    for name, value in (("MLFLOW_TRACKING_USERNAME", username), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _run_dirs(spec) -> list:
    return [p for p in spec.runs_dir.glob("*") if p.is_dir() and not p.name.startswith(".")]


def test_a_sweep_logs_to_the_server_over_http_and_the_report_reads_it_back(
    write_sweep, reaper, mlflow_server, monkeypatch, tmp_path
):
    _login(monkeypatch, mlflow_server.username, mlflow_server.password)
    spec = load_sweep(write_sweep("team", seeds=2, tracking_uri=mlflow_server.uri))
    reaper.append(local_temp_dir(spec.directory))
    outcome = run_sweep(spec, write=lambda line: None)
    assert outcome.counts == {"finished": 2}

    client = MlflowClient(mlflow_server.uri)  # over HTTP, with the same credentials
    experiment = client.get_experiment_by_name("team")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["run_id"] for r in runs) == sorted(t.id for t in outcome.trials)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # the server holds exactly the evaluations of each run directory
        evals = RunDirectory(spec.runs_dir / run.data.tags["run_id"]).rows("eval.csv")
        for metric in ("success", "episode_return"):
            history = sorted(
                (m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"evaluation/{metric}")
            )
            assert history == [(int(r["step"]), pytest.approx(float(r[metric]))) for r in evals]

    out = tmp_path / "from-mlflow"
    args = ["report", "mlflow:team", "--tracking-uri", mlflow_server.uri, "--out", str(out), "--format", "csv"]
    assert main(args) == 0
    from_server = pd.read_csv(out / "report-task.csv")
    from_run_dirs = pd.read_csv(spec.directory / "report" / "report-task.csv")  # written by the sweep itself
    for column in ("row", "method", "mean", "std", "n_seeds", "seeds", "flags"):
        assert from_server[column].astype(str).tolist() == from_run_dirs[column].astype(str).tolist(), column
    assert from_server["n_seeds"].tolist() == [2] and from_server["row"].tolist() == [spec.tasks[0]]


@pytest.mark.parametrize(
    ("username", "password", "says"),
    [("flowsteer-admin", "wrong-password", "refused the login of user 'flowsteer-admin'"), (None, None, "asks for")],
)
def test_wrong_or_missing_credentials_stop_a_sweep_before_any_trial(
    write_sweep, mlflow_server, monkeypatch, capsys, username, password, says
):
    _login(monkeypatch, username, password)
    path = write_sweep("refused", tracking_uri=mlflow_server.uri)
    spec = load_sweep(path)
    with pytest.raises(TrackingAuthError) as refused:
        run_sweep(spec, write=lambda line: None)
    message = str(refused.value)
    assert mlflow_server.uri in message and says in message and "HTTP 401" in message
    assert "MLFLOW_TRACKING_USERNAME" in message and "MLFLOW_TRACKING_PASSWORD" in message
    assert _run_dirs(spec) == [] and not local_temp_dir(spec.directory).exists()  # no trial, no Ray

    assert main(["sweep", str(path)]) == 2  # the command prints it as one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("flowsteer: error: MLflow at") and "Traceback" not in err


def test_flowsteer_train_refuses_wrong_credentials_before_the_run(mlflow_server, monkeypatch, capsys, tmp_path):
    _login(monkeypatch, mlflow_server.username, "wrong-password")
    args = ["train", "--algo", "bc", "--task", "cube-single-play-singletask-task2-v0", "--offline-steps", "20",
            "--tracking-uri", mlflow_server.uri, "--output-dir", str(tmp_path / "runs"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    assert "refused the login" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_flowsteer_report_refuses_wrong_credentials_clearly(mlflow_server, monkeypatch, capsys, tmp_path):
    _login(monkeypatch, mlflow_server.username, "wrong-password")
    args = ["report", "mlflow:team", "--tracking-uri", mlflow_server.uri, "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"MLflow at {mlflow_server.uri} refused the login (HTTP 401)" in err and "MLFLOW_TRACKING_PASSWORD" in err


def test_an_unreachable_server_is_reported_not_refused():
    # Runs keep their metrics on disk and sync later, so a dead server must not stop work: check_access returns
    # the reason instead of raising.
    reason = check_access(f"http://127.0.0.1:{_free_port()}", "any")
    assert reason is not None and "Connection" in reason
