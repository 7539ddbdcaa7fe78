"""Seed groups: several seeds of one setting trained in one vmapped program, each seed a run of its own.

One offline-to-online group of three seeds (FQL, 100 offline steps then 400 online steps: two episodes of 200
steps, so each seed checkpoints inside the online phase) is trained once for the module; the tests compare it with
the same seeds run alone, with the group killed and resumed, and with a group whose seed diverges.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import RunResult, run, run_group
from flowsteer.platform.spec import RunSpec, RunSpecError
from flowsteer.reports.aggregate import PAPER, run_scores
from flowsteer.reports.load import load_runs
from flowsteer.rundir import measurements, read_log

from .conftest import spec_factory

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("seed-groups")]

SEEDS = [0, 1, 2]
STEPS = {"offline_steps": 100, "online_steps": 400, "eval_interval": 100, "checkpoint_interval": 50}


def _specs(make_spec, output: str) -> list[RunSpec]:
    return [make_spec("fql", output=output, seed=seed, **STEPS) for seed in SEEDS]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> tuple[list[RunResult], Path]:
    """The group trained without interruption, once for the module, and the root it wrote under."""
    root = tmp_path_factory.mktemp("group-reference")
    return run_group(_specs(spec_factory(root, smoke_cache), "group"), progress=False), root


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> Path:
    """The group stopped at its first evaluation of step 400, after every seed's online checkpoint at the first
    episode's end (step 300), once for the module: its root, which tests copy before they resume from it."""
    root = tmp_path_factory.mktemp("group-interrupted")
    with pytest.raises(KeyboardInterrupt):
        run_group(_specs(spec_factory(root, smoke_cache), "stopped"), progress=False, on_evaluation=_stop_at(400))
    return root


def _copy_of(interrupted: Path, tmp_path: Path, make_spec) -> list[RunSpec]:
    """The interrupted group's run directories and MLflow store, copied under ``tmp_path``; its specs there."""
    shutil.copytree(interrupted / "stopped", tmp_path / "stopped")
    shutil.copy(interrupted / "mlflow.db", tmp_path / "mlflow.db")
    return _specs(make_spec, "stopped")


def _final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    final = checkpoint.latest(run_dir / "checkpoints")
    assert final is not None and final.name == "step_000000500"
    with np.load(final / "arrays.npz", allow_pickle=False) as arrays:
        return dict(arrays)


def _assert_identical(run_dir: Path, expected: Path) -> None:
    """Same logs and the same final checkpoint, bit for bit."""
    for name in ("eval.csv", "train.csv"):
        assert measurements(run_dir / name) == measurements(expected / name), name
    final, wanted = checkpoint.latest(run_dir / "checkpoints"), checkpoint.latest(expected / "checkpoints")
    assert final is not None and wanted is not None and final.name == wanted.name
    assert (final / "arrays.npz").read_bytes() == (wanted / "arrays.npz").read_bytes()


def test_each_seed_of_a_group_matches_the_same_seed_run_alone(
    make_spec, reference: tuple[list[RunResult], Path]
) -> None:
    """A grouped seed is the single run: the same directory and id, the same evaluations. Not bit for bit: the
    group's batched matmuls round differently from one seed's (about 1e-7 after an update on CPU). Offline that
    stays at rounding level (train.csv to 1e-4); online it changes the collected trajectories (MuJoCo amplifies a
    1e-7 action difference), so final parameters are compared by distance: each grouped seed's parameters lie
    within 5% (relative norm) of its single run's, and at least ten times closer to it than to another seed's."""
    group, _ = reference
    singles = [run(spec, progress=False) for spec in _specs(make_spec, "single")]
    for grouped, alone in zip(group, singles, strict=True):
        assert grouped.run_dir.name == alone.run_dir.name
        assert grouped.status == alone.status == "finished"
        ours, theirs = read_log(grouped.run_dir / "eval.csv").rows, read_log(alone.run_dir / "eval.csv").rows
        assert [row["step"] for row in ours] == [row["step"] for row in theirs] == [100, 200, 300, 400, 500]
        for mine, single in zip(ours, theirs, strict=True):
            assert mine["success"] == single["success"]
            np.testing.assert_allclose(mine["episode_return"], single["episode_return"], rtol=0.05, atol=1.0)
        offline = [r for r in read_log(grouped.run_dir / "train.csv").rows if r["step"] <= STEPS["offline_steps"]]
        expected = [r for r in read_log(alone.run_dir / "train.csv").rows if r["step"] <= STEPS["offline_steps"]]
        assert len(offline) == len(expected) == 5
        for mine, single in zip(offline, expected, strict=True):
            for column, value in single.items():
                if column != "wall_time":
                    np.testing.assert_allclose(mine[column], value, rtol=1e-4, atol=1e-5, err_msg=column)
    params = [_params(result.run_dir) for result in group]
    single_params = [_params(result.run_dir) for result in singles]
    for i, mine in enumerate(params):
        own = _distance(mine, single_params[i])
        others = min(_distance(mine, single_params[j]) for j in range(len(SEEDS)) if j != i)
        assert own < 0.05 and own * 10 < others, (SEEDS[i], own, others)


def _params(run_dir: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in _final_arrays(run_dir).items() if k.startswith("state/.params")}


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest relative norm of the difference, over parameter tensors."""
    assert a.keys() == b.keys()
    return max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(b[k]), 1e-12)) for k in a)


def test_a_group_killed_9_then_resumed_ends_identical_to_the_uninterrupted_group(
    tmp_path: Path, make_spec, reference: tuple[list[RunResult], Path]
) -> None:
    group, _ = reference
    specs = _specs(make_spec, "interrupted")
    files = tmp_path / "specs.json"
    files.write_text(json.dumps([spec.to_dict() for spec in specs]))
    script = (
        "import json, sys; from flowsteer.platform.loop import run_group; from flowsteer.platform.spec import RunSpec;"
        "specs = [RunSpec.from_dict(s) for s in json.loads(open(sys.argv[1]).read())];"
        "run_group(specs, resume=len(sys.argv) > 2, progress=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(files)], stderr=subprocess.PIPE, text=True)
    _kill_in_online_phase(specs[0].run_dir, process)

    resumed = subprocess.run([sys.executable, "-c", script, str(files), "resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for spec, expected in zip(specs, group, strict=True):
        _assert_identical(spec.run_dir, expected.run_dir)


def _kill_in_online_phase(run_dir: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        latest = checkpoint.latest(run_dir / "checkpoints")
        if latest is not None and json.loads((latest / "meta.json").read_text())["phase"] == "online":
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("no online checkpoint within 600 s")


def _stop_at(stop: int):
    """An evaluation hook that interrupts the group at its first evaluation of step `stop`."""

    def hook(spec: RunSpec, step: int, results: dict[str, float]) -> None:
        if step == stop:
            raise KeyboardInterrupt

    return hook


def test_seeds_resumed_from_checkpoints_of_different_steps_end_identical_to_the_uninterrupted_group(
    tmp_path: Path, make_spec, reference: tuple[list[RunResult], Path], interrupted: Path
) -> None:
    """A kill between two seeds' checkpoint writes leaves them at different steps: the late seed catches up in the
    group's program, alone, and every seed ends as in the uninterrupted group."""
    group, _ = reference
    specs = _copy_of(interrupted, tmp_path, make_spec)
    late = specs[1].run_dir / "checkpoints"
    newest = checkpoint.latest(late)
    assert newest is not None
    (late / checkpoint.LATEST).unlink()
    os.rename(newest, late / f".dropped-{newest.name}")  # as if the kill came before this seed's write
    assert checkpoint.step_of(newest) == 300 and checkpoint.step_of(checkpoint.newest_readable(late)) == 100

    run_group(specs, resume=True, progress=False)
    for spec, expected in zip(specs, group, strict=True):
        _assert_identical(spec.run_dir, expected.run_dir)


def test_a_seed_that_diverges_stops_alone_and_the_others_end_as_in_the_uninterrupted_group(
    tmp_path: Path, make_spec, reference: tuple[list[RunResult], Path], interrupted: Path
) -> None:
    group, _ = reference
    specs = _copy_of(interrupted, tmp_path, make_spec)
    _inject_nan(specs[1].run_dir)

    results = run_group(specs, resume=True, progress=False)
    assert [r.status for r in results] == ["finished", "diverged", "finished"]
    assert "diverged between steps" in results[1].message and "became NaN or infinite" in results[1].message
    status = json.loads((specs[1].run_dir / "status.json").read_text())
    assert status["state"] == "diverged"
    for index in (0, 2):
        _assert_identical(specs[index].run_dir, group[index].run_dir)

    scores = run_scores(load_runs(specs[0].run_dir.parent), PAPER)
    flagged = scores.loc[scores["incomplete"] != "", ["run", "incomplete"]]
    assert list(flagged["run"].unique()) == [specs[1].run_id]
    assert all("diverged" in reason for reason in flagged["incomplete"])


def _inject_nan(run_dir: Path) -> None:
    """NaN in the optimizer state of the run's newest checkpoint: the seed still acts with finite parameters, and
    its next update diverges."""
    newest = checkpoint.latest(run_dir / "checkpoints")
    assert newest is not None
    with np.load(newest / "arrays.npz", allow_pickle=False) as stored:
        arrays = dict(stored)
    key = next(k for k in sorted(arrays) if k.startswith("state/.opt_state") and arrays[k].dtype == np.float32)
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(newest / "arrays.npz", **arrays)


def test_a_group_of_different_settings_is_refused_naming_the_difference(make_spec) -> None:
    specs = [make_spec("fql", seed=0), make_spec("fql", seed=1, offline_steps=80)]
    with pytest.raises(RunSpecError, match=r"differ only in their seed.*offline_steps"):
        run_group(specs, progress=False)


def test_a_group_naming_a_seed_twice_is_refused(make_spec) -> None:
    with pytest.raises(RunSpecError, match="lists a seed twice"):
        run_group([make_spec("fql", seed=0), make_spec("fql", seed=0)], progress=False)
