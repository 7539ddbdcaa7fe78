"""kill -9 at any moment, then --resume: the run ends exactly as if it had never been interrupted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import RunResult, run
from flowsteer.rundir import measurements

from .conftest import spec_factory

# Real runs killed and resumed in subprocesses; in one xdist worker, so the reference runs are made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("resume")]

PHASES = {"offline": 400, "online": 600}


# Single steps, and QC-FQL's chunks of 5 actions executed open loop (docs/chunking.md): a chunk in flight when the
# run is killed must not change what the resumed run does.
CASES = [("offline", 1), ("online", 1), ("online", 5)]


def _spec(make_spec, output: str, action_chunk: int):
    return make_spec(
        "fql",
        output=output,
        offline_steps=PHASES["offline"],
        online_steps=PHASES["online"],
        checkpoint_interval=100,
        eval_interval=200,
        action_chunk=action_chunk,
    )


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> dict[int, tuple[RunResult, Path]]:
    """The runs never interrupted, one per chunk length, once for the module (the kills are compared with them),
    and their MLflow stores."""
    found = {}
    for action_chunk in sorted({h for _, h in CASES}):
        root = tmp_path_factory.mktemp(f"reference-h{action_chunk}")
        spec = _spec(spec_factory(root, smoke_cache), "reference", action_chunk)
        found[action_chunk] = run(spec, progress=False), root / "mlflow.db"
    return found


def _copy_store(source: Path, target: Path) -> None:
    """A copy of the reference's MLflow store, so that the interrupted run shares it with a run of its run id,
    as when the reference runs in the test itself."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _start(spec, tmp_path: Path, resume: bool = False) -> subprocess.Popen:
    config = tmp_path / f"{spec.output_dir.rsplit('/', 1)[-1]}.yaml"
    config.write_text(yaml.safe_dump(spec.to_dict()))
    command = [sys.executable, "-m", "flowsteer", "train", "--config", str(config), "--quiet"]
    return subprocess.Popen(
        command + (["--resume"] if resume else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _latest_meta(run_dir: Path) -> dict | None:
    path = checkpoint.latest(run_dir / "checkpoints")
    return json.loads((path / "meta.json").read_text()) if path else None


def _kill_during(phase: str, spec, process: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        meta = _latest_meta(spec.run_dir)
        if meta is not None and meta["phase"] == phase:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return meta
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no {phase} checkpoint within 300 s")


@pytest.mark.parametrize(("phase", "action_chunk"), CASES)
def test_kill_9_then_resume_gives_the_numbers_of_an_uninterrupted_run(
    make_spec, references: dict[int, tuple[RunResult, Path]], tmp_path: Path, phase: str, action_chunk: int
) -> None:
    reference, store = references[action_chunk]
    _copy_store(store, tmp_path / "mlflow.db")  # make_spec's store

    spec = _spec(make_spec, "interrupted", action_chunk)
    meta = _kill_during(phase, spec, _start(spec, tmp_path))
    assert meta["step"] < PHASES["offline"] + PHASES["online"]
    assert json.loads((spec.run_dir / "status.json").read_text())["state"] == "running"

    refused = _start(spec, tmp_path)
    assert refused.wait(timeout=120) == 2 and "Resume it with --resume" in refused.communicate()[1]

    resumed = _start(spec, tmp_path, resume=True)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "finished at step 1,000" in out

    for name in ("eval.csv", "train.csv"):
        assert measurements(spec.run_dir / name) == measurements(reference.run_dir / name), name
    final = checkpoint.latest(spec.run_dir / "checkpoints")
    expected = checkpoint.latest(reference.run_dir / "checkpoints")
    assert final.name == expected.name == "step_000001000"
    assert (final / "arrays.npz").read_bytes() == (expected / "arrays.npz").read_bytes()

    client = MlflowClient(spec.resolved_tracking_uri())
    experiment = client.get_experiment_by_name("tests").experiment_id
    mine = [r for r in client.search_runs([experiment]) if r.data.tags.get("run_id") == spec.run_id]
    assert len(mine) == 2  # the reference run and the interrupted-then-resumed one, not a third
    for mlflow_run in mine:
        steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "evaluation/success")]
        assert steps == [200, 400, 600, 800, 1000]
