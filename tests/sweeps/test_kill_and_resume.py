"""SIGKILL the sweep driver mid-sweep, then resume: every trial completes exactly once, from its checkpoints,
with the numbers of a sweep that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from flowsteer.platform import checkpoint
from flowsteer.rundir import measurements, read_json
from flowsteer.sweeps.cluster import local_temp_dir, processes_using
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.trainable import read_attempts
from flowsteer.sweeps.trials import grid_trials

from .conftest import TINY

pytestmark = pytest.mark.integration  # two real sweeps on Ray, one killed and resumed


def _sweep(path: Path, *flags: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "flowsteer", "sweep", str(path), *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _wait_for_a_checkpointed_unfinished_trial(trials, driver: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.stdout.read()
        for trial in trials:
            status = read_json(trial.spec.run_dir / "status.json", {})
            if status.get("state") == "running" and list((trial.spec.run_dir / "checkpoints").glob("step_*")):
                return
        time.sleep(0.05)
    raise AssertionError("no trial reached a checkpoint in time")


def _checkpoint_step(run_dir: Path) -> int:
    last = checkpoint.latest(run_dir / "checkpoints")
    return read_json(last / "meta.json", {})["step"] if last else 0


@pytest.mark.timeout(1800)  # two sweeps of four trials, one of them killed and resumed
def test_a_killed_driver_resumes_each_trial_once_to_the_numbers_of_an_uninterrupted_sweep(
    write_sweep, reaper, tmp_path
):
    path = write_sweep(
        "killed",
        algorithms={"fql": {"hyperparameters": TINY["fql"]}},
        seeds=4,
        run={"offline_steps": 600, "eval_interval": 200, "checkpoint_interval": 100, "log_interval": 100},
    )
    spec = load_sweep(path)
    temp_dir = local_temp_dir(spec.directory)
    reaper.append(temp_dir)
    trials = grid_trials(spec)

    driver = _sweep(path, cwd=tmp_path)
    _wait_for_a_checkpointed_unfinished_trial(trials, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    interrupted = [t for t in trials if read_json(t.spec.run_dir / "status.json", {}).get("state") == "running"]
    # The step each interrupted trial must at least continue from: its last complete checkpoint, if it had
    # written one (a trial killed before its first checkpoint rightly starts again from step 0).
    saved = {t.id: _checkpoint_step(t.spec.run_dir) for t in interrupted}
    assert any(step > 0 for step in saved.values()), saved
    leftovers = processes_using(temp_dir)  # Ray's agents outlive a SIGKILLed driver

    refused = subprocess.run([sys.executable, "-m", "flowsteer", "sweep", str(path)], capture_output=True, text=True)
    assert refused.returncode == 2 and "was interrupted" in refused.stderr and "--resume" in refused.stderr

    resumed = _sweep(path, "--resume", cwd=tmp_path)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "4 finished" in output
    if leftovers:
        assert "process(es) left by a killed driver" in output

    resumed_from = {}
    for trial in interrupted:
        starts = [a for a in read_attempts(trial.spec.run_dir) if a["event"] == "start"]
        assert starts[0]["checkpoint_step"] == 0
        resumed_from[trial.id] = starts[-1]["checkpoint_step"]
    # A trial that had a checkpoint continued from it, not from scratch (or from a later one, if its orphaned
    # worker kept training until the resume stopped it). One such trial at least exists (asserted above).
    assert all(resumed_from[i] >= step for i, step in saved.items() if step > 0), (saved, resumed_from)

    mlflow.set_tracking_uri(spec.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[spec.name])
    assert sorted(runs["tags.run_id"]) == sorted(t.id for t in trials)  # one MLflow run per trial
    assert set(runs["status"]) == {"FINISHED"}
    client = mlflow.MlflowClient(spec.tracking_uri)
    for run_id in runs["run_id"]:
        steps = [m.step for m in client.get_metric_history(run_id, "evaluation/success")]
        assert sorted(steps) == [200, 400, 600]
    assert processes_using(temp_dir) == []

    # The same sweep, never interrupted: every trial's logged numbers are the same, bit for bit.
    reference = load_sweep(path, storage=tmp_path / "uninterrupted")
    reaper.append(local_temp_dir(reference.directory))
    assert run_sweep(reference, write=lambda line: None).counts == {"finished": 4}
    for trial, alone in zip(trials, grid_trials(reference), strict=True):
        assert alone.id == trial.id
        for name in ("eval.csv", "train.csv"):
            assert measurements(trial.spec.run_dir / name) == measurements(alone.spec.run_dir / name), (trial.id, name)
