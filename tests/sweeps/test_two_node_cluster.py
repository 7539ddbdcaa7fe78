"""A two-node Ray cluster on this machine (a head and a worker started with `ray start` on loopback, each with
its own temp directory): a sweep joins it with --address, spreads over both nodes, survives the worker node's
death mid-sweep (its trials are rescheduled and continue from their checkpoints), and loses nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flowsteer.rundir import RunDirectory, read_json
from flowsteer.sweeps.cluster import processes_using
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.trainable import read_attempts
from flowsteer.sweeps.trials import grid_trials

from .conftest import TINY

pytestmark = pytest.mark.integration  # a real two-node Ray cluster

RAY = Path(sys.executable).with_name("ray")
# `ray start` clusters use token authentication (Ray 2.59+); every process must use the same mode.
ENV = os.environ | {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_start(*args: str) -> None:
    done = subprocess.run([str(RAY), "start", "--disable-usage-stats", *args], env=ENV, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def two_nodes(reaper):
    """(address, head temp dir, worker temp dir); both nodes are SIGKILLed at teardown (never `ray stop`)."""
    head, worker = Path(tempfile.mkdtemp(prefix="fsh")), Path(tempfile.mkdtemp(prefix="fsw"))
    reaper += [head, worker]
    port = _free_port()
    _ray_start("--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={head}",
               "--include-dashboard=false")  # fmt: skip
    # Another loopback address, so the driver (on the head's address) attaches to the head node's raylet.
    _ray_start(f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.2", "--num-cpus=1", f"--temp-dir={worker}")
    yield f"127.0.0.1:{port}", head, worker
    for directory in (head, worker):
        for pid in processes_using(directory):
            os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    shutil.rmtree(head, ignore_errors=True)
    shutil.rmtree(worker, ignore_errors=True)


def _trial_on_worker_with_checkpoint(trials, worker: Path, driver: subprocess.Popen, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.stdout.read()
        on_worker = set(processes_using(worker))
        for trial in trials:
            attempts = read_attempts(trial.spec.run_dir)
            running = read_json(trial.spec.run_dir / "status.json", {}).get("state") == "running"
            checkpointed = bool(list((trial.spec.run_dir / "checkpoints").glob("step_*")))
            if attempts and attempts[-1]["pid"] in on_worker and running and checkpointed:
                return trial
        time.sleep(0.05)
    raise AssertionError("no trial reached a checkpoint on the worker node in time")


def test_a_sweep_spreads_over_two_nodes_and_survives_the_worker_nodes_death(write_sweep, two_nodes, tmp_path):
    address, head, worker = two_nodes
    path = write_sweep(
        "cluster",
        algorithms={"fql": {"hyperparameters": TINY["fql"]}},
        seeds=4,
        max_failures=3,
        run={"offline_steps": 600, "eval_interval": 200, "checkpoint_interval": 100, "log_interval": 100},
    )
    spec = load_sweep(path)
    trials = grid_trials(spec)
    command = [sys.executable, "-m", "flowsteer", "sweep", str(path), "--address", address]
    driver = subprocess.Popen(
        command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    victim = _trial_on_worker_with_checkpoint(trials, worker, driver)
    for pid in processes_using(worker):  # the worker node dies: raylet, agents and its trial processes
        os.kill(pid, signal.SIGKILL)

    output = driver.communicate(timeout=900)[0]
    assert driver.returncode == 0, output
    assert "2 node(s), 2 CPUs" in output and "4 finished" in output
    assert "retrying from its last checkpoint" in output

    nodes = {a["node"] for t in trials for a in read_attempts(t.spec.run_dir)}
    assert len(nodes) == 2  # the sweep ran on both nodes
    starts = [a for a in read_attempts(victim.spec.run_dir) if a["event"] == "start"]
    assert len(starts) >= 2 and starts[-1]["checkpoint_step"] > 0 and starts[-1]["node"] != starts[0]["node"]
    for trial in trials:
        assert read_json(trial.spec.run_dir / "status.json")["state"] == "finished"
        assert [int(r["step"]) for r in RunDirectory(trial.spec.run_dir).rows("eval.csv")] == [200, 400, 600]
    assert processes_using(head), "the head node is still up: the sweep joined it and did not stop it"
