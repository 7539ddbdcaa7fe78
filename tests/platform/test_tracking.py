"""MLflow is a view that never stalls a run and never sees a password: a dead server costs one probe, rows are
sent later with the time they were measured, and `flowsteer sync` can send them to a corrected server."""

from __future__ import annotations

import json
import socket

import pytest
from mlflow.tracking import MlflowClient

from flowsteer.cli import main
from flowsteer.platform.loop import run
from flowsteer.platform.spec import RunSpecError
from flowsteer.rundir import RunDirectory, RunFileError
from flowsteer.trackinguri import redact

pytestmark = pytest.mark.integration  # real runs against dead and live MLflow stores

TASK = "cube-single-play-singletask-task2-v0"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def offline_run(make_spec, capsys):
    """A finished bc run whose tracking server never answered, and what the run printed."""
    spec = make_spec("bc", tracking_uri=f"http://127.0.0.1:{_dead_port()}", eval_interval=20)
    result = run(spec, progress=False)
    return spec, result, capsys.readouterr().err


@pytest.mark.timeout(300)  # MLflow's own retries once held such a run for 8 minutes; a hang fails here
def test_a_dead_tracking_server_costs_one_warning_and_the_run_goes_on(offline_run) -> None:
    _, result, err = offline_run
    assert result.status == "finished"
    assert [r["step"] for r in RunDirectory(result.run_dir).rows("eval.csv")] == [20.0, 40.0, 60.0]
    assert err.count("is unavailable") == 1 and "the run goes on" in err
    assert f"flowsteer sync {result.run_dir}" in err
    assert "mlflow_run_id" not in json.loads((result.run_dir / "tracking.json").read_text())


def test_sync_sends_the_rows_later_stamped_with_the_time_they_were_measured(offline_run, tmp_path, capsys) -> None:
    _, result, _ = offline_run
    store = f"sqlite:///{tmp_path / 'later.db'}"
    assert main(["sync", str(result.run_dir), "--tracking-uri", store]) == 0
    assert "in sync with MLflow at" in capsys.readouterr().out
    client = MlflowClient(store)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    history = client.get_metric_history(mlflow_run.info.run_id, "evaluation/success")
    rows = RunDirectory(result.run_dir).rows("eval.csv")
    assert [(m.step, m.timestamp) for m in history] == [(int(r["step"]), int(1000 * r["wall_time"])) for r in rows]
    assert mlflow_run.data.params["run.algo"] == "bc" and "protocol.git_sha" in mlflow_run.data.params
    assert main(["sync", str(result.run_dir)]) == 0  # the corrected URI is remembered; nothing is sent twice
    assert len(client.get_metric_history(mlflow_run.info.run_id, "evaluation/success")) == len(rows)


def test_sync_of_a_dead_server_answers_at_once(offline_run, capsys) -> None:
    _, result, _ = offline_run
    assert main(["sync", str(result.run_dir)]) == 1
    out = capsys.readouterr().out
    assert "is unreachable" in out and "nothing lost" in out and "--tracking-uri" in out


def test_sync_refuses_a_run_that_another_process_owns(offline_run, lock_holder, capsys) -> None:
    _, result, _ = offline_run
    holder = lock_holder(result.run_dir)
    assert main(["sync", str(result.run_dir)]) == 1
    assert f"already in use by pid {holder.pid}" in capsys.readouterr().out


def test_a_damaged_tracking_file_is_named_by_sync_and_by_train(offline_run, capsys) -> None:
    spec, result, _ = offline_run
    (result.run_dir / "tracking.json").write_text('{"tracking_uri":\n')
    assert main(["sync", str(result.run_dir)]) == 1
    assert "tracking.json is damaged" in capsys.readouterr().out
    (result.run_dir / "status.json").unlink()  # so that train does not stop at 'finished'
    with pytest.raises(RunFileError, match=r"tracking.json is damaged.*delete it to send every row to a new"):
        run(spec, resume=True, progress=False)


def test_a_password_in_a_tracking_uri_is_refused_before_any_work_and_never_shown(tmp_path, capsys) -> None:
    args = ["train", "--algo", "bc", "--task", TASK, "--offline-steps", "20", "--output-dir", str(tmp_path / "runs"),
            "--tracking-uri", "http://alice:S3cretPW@127.0.0.1:5000"]  # fmt: skip
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "S3cretPW" not in captured.out + captured.err
    assert "http://alice:***@127.0.0.1:5000 holds a password" in captured.err
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in captured.err
    assert not (tmp_path / "runs").exists()


def test_a_password_in_the_environments_tracking_uri_is_refused_too(make_spec, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:Hunter2@mlflow.example.org")
    spec = make_spec("bc", tracking_uri=None)
    with pytest.raises(RunSpecError, match=r"MLFLOW_TRACKING_URI https://bob:\*\*\*@mlflow.example.org holds a"):
        spec.resolved_tracking_uri()


def test_redact_hides_every_password_in_a_message() -> None:
    text = "failed: http://a:pw1@h:1/x and https://b:pw2@k/ but not http://h:5000 or user@host"
    assert redact(text) == "failed: http://a:***@h:1/x and https://b:***@k/ but not http://h:5000 or user@host"
