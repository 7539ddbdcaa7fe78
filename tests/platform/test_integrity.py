"""Nothing saved is lost or mixed: one owner per run directory, logs never appended twice or padded, damaged
checkpoints skipped, a failed start recorded as failed, and a run directory that holds another run refused."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flowsteer.algorithms import registry
from flowsteer.platform import checkpoint
from flowsteer.platform.loop import run
from flowsteer.rundir import RunBusyError, RunDirectory, RunDirectoryError, RunFileError, RunWarning, measurements

pytestmark = pytest.mark.integration  # real runs, damaged and resumed

LOGS = ("train.csv", "eval.csv")


def _finished(make_spec, **fields):
    """A finished tiny run (evaluations and checkpoints at 20, 40, 60; the last two kept), its logs' measurements."""
    spec = make_spec("bc", checkpoint_interval=20, eval_interval=20, **fields)
    result = run(spec, progress=False)
    return spec, {name: measurements(result.run_dir / name) for name in LOGS}


def _as_if_killed_after(spec, step: int) -> None:
    """Leave the directory as a run SIGKILLed right after checkpoint `step`: later checkpoints gone, logs longer
    than that checkpoint recorded, status still 'running'."""
    for path in checkpoint.candidates(spec.run_dir / "checkpoints"):
        if checkpoint.step_of(path) > step:
            for file in path.iterdir():
                file.unlink()
            path.rmdir()
    RunDirectory(spec.run_dir).set_status("running", step=step)


def test_a_second_process_on_a_running_run_is_refused_and_told_who_owns_it(make_spec, lock_holder) -> None:
    spec = make_spec("bc")
    holder = lock_holder(spec.run_dir)
    with pytest.raises(RunBusyError, match=rf"run {spec.run_id} is already in use by pid {holder.pid} on"):
        run(spec, progress=False)
    assert not (spec.run_dir / "config.json").exists()  # refused before writing anything
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert run(spec, progress=False).status == "finished"  # the killed owner's lock died with it


def test_a_run_restarted_from_step_0_writes_its_logs_anew(make_spec) -> None:
    spec, logs = _finished(make_spec)
    for path in checkpoint.candidates(spec.run_dir / "checkpoints"):  # killed before its first checkpoint
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    RunDirectory(spec.run_dir).set_status("running", step=0)
    assert run(spec, progress=False).status == "finished"
    for name in LOGS:
        assert measurements(spec.run_dir / name) == logs[name], name  # each row once, not appended again


@pytest.mark.parametrize("pointer", ["missing", "dangling", "empty"])
def test_a_missing_or_dangling_latest_pointer_resumes_from_the_newest_checkpoint(make_spec, pointer: str) -> None:
    spec, logs = _finished(make_spec)
    _as_if_killed_after(spec, 40)
    latest = spec.run_dir / "checkpoints" / checkpoint.LATEST
    {"missing": latest.unlink, "dangling": lambda: latest.write_text("step_000000999"),
     "empty": lambda: latest.write_text("")}[pointer]()  # fmt: skip
    with pytest.raises(RunDirectoryError, match=r"holds an unfinished run \(checkpoint step_000000040\)"):
        run(spec, progress=False)  # without --resume: refused, not restarted from 0
    resumed = run(spec, resume=True, progress=False)
    assert resumed.status == "finished" and resumed.step == 60
    for name in LOGS:
        assert measurements(spec.run_dir / name) == logs[name], name


@pytest.mark.parametrize("damage", ["arrays.npz bytes", "arrays.npz cut", "meta.json cut"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(make_spec, damage: str) -> None:
    spec, logs = _finished(make_spec)
    final = (spec.run_dir / "checkpoints" / "step_000000060" / "arrays.npz").read_bytes()
    _as_if_killed_after(spec, 60)
    newest = spec.run_dir / "checkpoints" / "step_000000060"
    if damage == "arrays.npz bytes":
        data = bytearray((newest / "arrays.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (newest / "arrays.npz").write_bytes(bytes(data))
    elif damage == "arrays.npz cut":
        (newest / "arrays.npz").write_bytes(final[:1000])
    else:
        (newest / "meta.json").write_text('{"step": 6')
    with pytest.warns(RunWarning, match=r"step_000000060.* Skipped: resuming from the previous checkpoint, step_0+40"):
        resumed = run(spec, resume=True, progress=False)
    assert resumed.status == "finished"
    for name in LOGS:
        assert measurements(spec.run_dir / name) == logs[name], name
    assert (spec.run_dir / "checkpoints" / "step_000000060" / "arrays.npz").read_bytes() == final


def test_a_run_whose_every_checkpoint_is_damaged_is_refused_and_left_as_it_is(make_spec) -> None:
    spec, _ = _finished(make_spec)
    _as_if_killed_after(spec, 60)
    for path in checkpoint.candidates(spec.run_dir / "checkpoints"):
        (path / "arrays.npz").write_bytes(b"not a zip")
    before = {name: (spec.run_dir / name).read_bytes() for name in LOGS}
    with pytest.raises(RunFileError, match=r"no checkpoint in .* can be read"):
        run(spec, resume=True, progress=False)
    assert {name: (spec.run_dir / name).read_bytes() for name in LOGS} == before


def test_resume_refuses_a_log_shorter_than_its_checkpoint_recorded_and_never_pads_it(make_spec) -> None:
    spec, _ = _finished(make_spec)
    _as_if_killed_after(spec, 40)
    short = (spec.run_dir / "eval.csv").read_bytes()[:50]
    (spec.run_dir / "eval.csv").write_bytes(short)
    with pytest.raises(RunFileError, match=r"eval.csv holds 50 bytes, but \d+ were written before checkpoint"):
        run(spec, resume=True, progress=False)
    assert (spec.run_dir / "eval.csv").read_bytes() == short  # no NUL bytes appended


def test_resume_refuses_a_log_edited_before_its_checkpoint(make_spec) -> None:
    spec, _ = _finished(make_spec)
    _as_if_killed_after(spec, 40)
    text = (spec.run_dir / "train.csv").read_text()
    edited = text.replace("20.0,", "21.0,", 1)  # same length, another step
    (spec.run_dir / "train.csv").write_text(edited)
    with pytest.raises(RunFileError, match="no longer holds the rows written before checkpoint step_000000040"):
        run(spec, resume=True, progress=False)
    assert (spec.run_dir / "train.csv").read_text() == edited


def test_a_failure_while_the_learner_is_built_leaves_the_run_failed_in_the_directory_and_mlflow(
    make_spec, monkeypatch
) -> None:
    real = registry.ALGORITHMS["bc"]

    def init(*args, **kwargs):  # fault injection: the device runs out of memory while the learner is built
        raise MemoryError("RESOURCE_EXHAUSTED: out of memory allocating the learner")

    monkeypatch.setitem(registry.ALGORITHMS, "bc", dataclasses.replace(real, init=init))
    spec = make_spec("bc")
    with pytest.raises(MemoryError):
        run(spec, progress=False)
    status = json.loads((spec.run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "out of memory" in status["message"]
    client = MlflowClient(spec.resolved_tracking_uri())
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert mlflow_run.info.status == "FAILED"


def test_the_same_run_is_found_whatever_the_output_dir_spelling_or_the_worker_settings(make_spec, tmp_path) -> None:
    spec, _ = _finished(make_spec)
    for other in (
        spec.replace(output_dir=str(tmp_path / "runs") + "/"),
        spec.replace(eval_envs=5, eval_workers=1),
        spec.replace(data={"cache_dir": str(tmp_path / "elsewhere")}),
    ):
        assert run(other, progress=False).status == "finished"


def test_a_moved_run_directory_can_be_resumed(make_spec, tmp_path: Path) -> None:
    spec, logs = _finished(make_spec)
    _as_if_killed_after(spec, 40)
    moved = spec.replace(output_dir=str(tmp_path / "moved"))
    os.rename(spec.run_dir.parent, tmp_path / "moved")
    assert run(moved, resume=True, progress=False).status == "finished"
    for name in LOGS:
        assert measurements(moved.run_dir / name) == logs[name], name


def test_a_directory_whose_config_records_another_run_is_refused_naming_the_field(make_spec) -> None:
    spec, _ = _finished(make_spec)
    config = json.loads((spec.run_dir / "config.json").read_text())
    config["run"]["offline_steps"] = 600
    config["algo_config"]["lr"] = 0.1
    (spec.run_dir / "config.json").write_text(json.dumps(config))
    (spec.run_dir / "status.json").unlink()
    with pytest.raises(RunDirectoryError, match=r"algo_config.lr: 0.1 there, 0.0003 now; offline_steps: 600 there"):
        run(spec, progress=False)


def test_a_damaged_status_file_is_named_and_the_run_still_resumes(make_spec) -> None:
    spec, logs = _finished(make_spec)
    _as_if_killed_after(spec, 40)
    (spec.run_dir / "status.json").write_text('{"state": "run')
    with pytest.warns(RunWarning, match=r"status.json is damaged.*Treating the run as unfinished"):
        assert run(spec, resume=True, progress=False).status == "finished"
    for name in LOGS:
        assert measurements(spec.run_dir / name) == logs[name], name


def test_a_damaged_config_file_is_a_clear_error(make_spec) -> None:
    spec, _ = _finished(make_spec)
    (spec.run_dir / "config.json").write_text('{"run": {"al')
    with pytest.raises(RunFileError, match=r"config.json is damaged: it is not valid JSON .* move .* away"):
        run(spec, progress=False)


def test_an_output_dir_that_cannot_be_created_is_a_clear_error(make_spec, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spec = make_spec("bc", output_dir=str(blocker / "runs"))
    with pytest.raises(RunDirectoryError, match=r"cannot create run directories in .* choose a writable --output-dir"):
        run(spec, progress=False)


def test_each_log_row_carries_the_wall_time_it_was_written(make_spec) -> None:
    before = time.time()
    spec, _ = _finished(make_spec)
    rows = RunDirectory(spec.run_dir).rows("eval.csv")
    assert rows and all(before <= row["wall_time"] <= time.time() for row in rows)
