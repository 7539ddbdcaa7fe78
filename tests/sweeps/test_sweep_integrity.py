"""A sweep checks cheap things first, scores runs as its report does, shows that report's warnings, refuses to
continue an interrupted broadcast without --resume, and keeps its private Ray cluster private."""

from __future__ import annotations

import json
import os
import stat
import time

import psutil
import pytest

from flowsteer.cli import main
from flowsteer.datasets.errors import MissingOfficialDataError
from flowsteer.rundir import RunDirectoryError
from flowsteer.sweeps import cluster
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.selection import score_trials
from flowsteer.sweeps.spec import SweepSpecError, load_sweep
from flowsteer.sweeps.summary import summarize
from flowsteer.sweeps.trials import broadcast_trials, grid_trials

pytestmark = pytest.mark.integration  # sweeps on a private Ray cluster and dataset generation

LOCOMOTION = "antmaze-large-navigate:default"


def test_a_missing_dataset_stops_the_sweep_before_any_other_dataset_is_generated(write_sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no official files anywhere
    cache = tmp_path / "empty-cache"
    path = write_sweep(
        tasks=["puzzle-3x3-play:default", LOCOMOTION], run={"data": {"episodes": 2, "cache_dir": str(cache)}}
    )
    with pytest.raises(MissingOfficialDataError, match="antmaze-large-navigate-v0 are not on this machine"):
        run_sweep(load_sweep(path), write=lambda line: None)
    assert not (cache / "ogbench").exists() or not any((cache / "ogbench").iterdir())  # nothing was generated
    assert not (tmp_path / "storage").exists()


def test_the_dry_run_checks_every_dataset_too(write_sweep, tmp_path, monkeypatch, capsys, smoke_cache):
    monkeypatch.setenv("HOME", str(tmp_path))
    auto = {"data": {"source": "auto", "episodes": 4, "episode_steps": 201, "cache_dir": str(smoke_cache)}}
    assert main(["sweep", str(write_sweep(tasks=[LOCOMOTION], run=auto)), "--dry-run"]) == 2
    assert "antmaze-large-navigate-v0 are not on this machine" in capsys.readouterr().err
    assert main(["sweep", str(write_sweep(tasks=["cube-single-play:default"])), "--dry-run"]) == 0
    assert "dataset   cube-single-play-v0: generated copy in" in capsys.readouterr().out


def test_an_unwritable_storage_is_one_clear_error(write_sweep, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    assert main(["sweep", str(write_sweep()), "--storage", str(tmp_path / "a-file" / "sweeps")]) == 2
    assert "cannot create the sweep directory" in capsys.readouterr().err


def test_an_address_nobody_answers_at_is_refused_at_once(write_sweep, capsys):
    assert main(["sweep", str(write_sweep()), "--address", "127.0.0.1:1"]) == 2
    assert "no Ray cluster answers at 127.0.0.1:1 (Connection refused)" in capsys.readouterr().err


def _finished_files(trial, success: list[float], state: str = "finished") -> None:
    path = trial.spec.run_dir
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"run": trial.spec.to_dict(), "run_id": trial.id}))
    steps = [20, 40, 60][-len(success) :]
    (path / "protocol.json").write_text(json.dumps({"setting": "offline", "evaluation": {"steps": [20, 40, 60]}}))
    rows = "".join(f"{step},{value}\n" for step, value in zip(steps, success, strict=True))
    (path / "eval.csv").write_text("step,success\n" + rows)
    (path / "status.json").write_text(json.dumps({"state": state, "step": 60}))


def test_a_finished_run_without_its_last_evaluations_scores_nan_not_zero(write_sweep):
    spec = load_sweep(write_sweep(seeds=2))
    complete, short = grid_trials(spec)
    _finished_files(complete, [0.2, 0.4, 0.6])
    _finished_files(short, [0.9])  # lost its first two evaluations
    scores = score_trials([complete, short])
    assert scores[complete.id] == pytest.approx(40.0)
    assert scores[short.id] != scores[short.id]  # NaN: the report's cell is incomplete, and so is this score
    summary = summarize([complete, short], scores)
    assert summary["score"].isna().tolist() == [False, True]


def _running(trial) -> str:
    trial.spec.run_dir.mkdir(parents=True)
    (trial.spec.run_dir / "status.json").write_text(json.dumps({"state": "running", "step": 20}))
    return trial.id


@pytest.mark.parametrize("mode", ["grid", "tune-then-broadcast", "optuna"])
def test_an_interrupted_first_stage_of_every_mode_refuses_to_continue_without_resume(write_sweep, mode):
    spaces = {"grid": {}, "tune-then-broadcast": {"grid": {"lr": [3e-4]}},
              "optuna": {"search": {"lr": {"loguniform": [1e-4, 1e-2]}}}}  # fmt: skip
    spec = load_sweep(write_sweep(mode=mode, algorithms={"bc": spaces[mode]}))
    if mode == "optuna":  # a search that began and did not record its end
        stale = "optuna-bc-cube-single-play-task2"
        (spec.directory / "tune" / stale).mkdir(parents=True)
    else:
        stale = _running(grid_trials(spec)[0])  # the default task: tune-then-broadcast's tuning stage too
    with pytest.raises(RunDirectoryError, match=rf"was interrupted: 1 trial\(s\) or searches .*\({stale}\).*--resume"):
        run_sweep(spec, write=lambda line: None)


def test_an_interrupted_broadcast_stage_refuses_to_continue_without_resume(write_sweep):
    path = write_sweep(mode="tune-then-broadcast", tasks=["cube-single-play:1,2"],
                       algorithms={"bc": {"grid": {"lr": [3e-4, 3e-3]}}})  # fmt: skip
    spec = load_sweep(path)
    tuned = grid_trials(spec, "tune", ["cube-single-play-singletask-task2-v0"])
    for trial in tuned:
        _finished_files(trial, [0.2, 0.4, 0.6])
    choice = {"bc on cube-single-play-v0": {"algo": "bc", "dataset": "cube-single-play-v0", "score": 40.0,
                                             "hyperparameters": {"lr": 3e-4}, "runs": [tuned[0].id]}}  # fmt: skip
    spec.directory.mkdir(parents=True, exist_ok=True)
    (spec.directory / "selection.json").write_text(json.dumps(choice))
    (broadcast,) = broadcast_trials(spec, {("bc", "cube-single-play-v0"): {"lr": 3e-4}})
    stale = _running(broadcast)
    with pytest.raises(RunDirectoryError, match=rf"was interrupted: 1 trial\(s\).*\({stale}\).*--resume"):
        run_sweep(spec, write=lambda line: None)


def test_the_sweeps_report_shows_its_warnings(write_sweep, reaper):
    spec = load_sweep(write_sweep("warned", seeds=2))
    reaper.append(cluster.local_temp_dir(spec.directory))
    first = grid_trials(spec)[0]
    _finished_files(first, [0.2, 0.4, 0.6])
    (first.spec.run_dir / "protocol.json").write_text("{ damaged")  # the report leaves this run out
    lines: list[str] = []
    run_sweep(spec, write=lines.append)
    assert any(line.startswith("report warning: 1 run(s) left out:") and "protocol.json is damaged" in line
               for line in lines), lines  # fmt: skip


def test_the_private_cluster_listens_on_loopback_only_with_an_owner_only_token(write_sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # Ray would write ~/.ray/auth_token
    spec = load_sweep(write_sweep())
    temp_dir = cluster.local_temp_dir(spec.directory)
    with cluster.connect(spec) as info:
        assert info.address == "local"
        assert stat.S_IMODE(temp_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((temp_dir / cluster.TOKEN_FILE).stat().st_mode) == 0o600
        time.sleep(2)  # the agents open their ports after ray.init returns
        listening = [
            connection.laddr.ip
            for pid in [*cluster.processes_using(temp_dir), os.getpid()]
            for connection in psutil.Process(pid).net_connections("inet")
            if connection.status == psutil.CONN_LISTEN
        ]
        assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in listening), listening
    assert not temp_dir.exists()  # removed with the cluster
    assert not (tmp_path / "home" / ".ray").exists()


def test_a_ray_directory_made_by_someone_else_is_refused(write_sweep, tmp_path):
    spec = load_sweep(write_sweep())
    temp_dir = cluster.local_temp_dir(spec.directory)
    temp_dir.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path, temp_dir)  # a planted link where the sweep's private directory should be
    try:
        with pytest.raises(SweepSpecError, match="is not a directory of this user"):
            cluster.private_temp_dir(spec.directory)
    finally:
        temp_dir.unlink()


def test_a_sweeps_temp_dir_left_world_readable_by_an_older_version_is_tightened(write_sweep):
    spec = load_sweep(write_sweep())
    temp_dir = cluster.local_temp_dir(spec.directory)
    temp_dir.mkdir(mode=0o777)
    temp_dir.chmod(0o777)
    try:
        assert stat.S_IMODE(cluster.private_temp_dir(spec.directory).stat().st_mode) == 0o700
    finally:
        temp_dir.rmdir()


def test_a_request_the_cluster_cannot_meet_fails_before_any_dataset_is_generated(write_sweep, tmp_path, capsys):
    cache = tmp_path / "empty-cache"
    path = write_sweep(tasks=["puzzle-3x3-play:default"], resources={"cpu": 1, "gpu": 0.5},
                       run={"data": {"source": "generated", "episodes": 2, "cache_dir": str(cache)}})  # fmt: skip
    assert main(["sweep", str(path)]) == 2
    assert "resources.gpu is 0.5 per trial but the cluster at local has no GPU" in capsys.readouterr().err
    assert not (cache / "ogbench").exists() or not any((cache / "ogbench").iterdir())  # nothing was generated
