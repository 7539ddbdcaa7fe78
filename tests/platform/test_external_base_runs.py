"""DSRL-SAC runs that steer a torch base policy file (`base_policy`): the paper's black-box setting. The noise
policy and critic train in JAX; the torch DDIM policy only decodes the chosen noise, in this process or in a Ray
actor. The policy file is the tiny one that flowsteer's own trainer writes (tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import run
from flowsteer.platform.spec import RunSpecError
from flowsteer.rundir import RunDirectory, measurements

from .conftest import spec_factory

# Real DSRL-SAC runs with a torch base; in one xdist worker, so the module's shared run is made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("external-base-runs")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def steering_spec(make_spec, policy: Path, **fields):
    """250 online steps on cube-single (one 200-step episode, then 50): 220 of warm-up, then SAC updates."""
    hyperparameters = {**make_spec("dsrl_sac").hyperparameters, "base_policy": str(policy), "warmup_steps": 220}
    values = dict(offline_steps=0, online_steps=250, eval_interval=125, log_interval=50, checkpoint_interval=100)
    return make_spec("dsrl_sac", hyperparameters=hyperparameters, **(values | fields))


@pytest.fixture(scope="module")
def module_spec(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path):
    """RunSpec factory whose runs go to output directories of one module-wide temporary root."""
    return spec_factory(tmp_path_factory.mktemp("external-base"), smoke_cache)


@pytest.fixture(scope="module")
def steered(module_spec, torch_policy_file: Path) -> dict:
    """One finished run steering the session's torch policy file in-process, shared by the tests that read it."""
    before = sha256(torch_policy_file)
    spec = steering_spec(module_spec, torch_policy_file)
    return {"spec": spec, "result": run(spec, progress=False), "sha256_before": before}


def test_dsrl_sac_steers_a_torch_policy_file_online_and_records_it(steered: dict, torch_policy_file: Path) -> None:
    result = steered["result"]
    assert result.status == "finished" and result.step == 250
    files = RunDirectory(result.run_dir)
    assert [int(r["step"]) for r in files.rows("eval.csv")] == [125, 250]
    assert files.rows("train.csv")[-1]["critic/critic_loss"] > 0  # SAC updated after the warm-up

    provenance = json.loads((result.run_dir / "protocol.json").read_text())["base_policy"]
    assert provenance["file"] == str(torch_policy_file) and provenance["sha256"] == steered["sha256_before"]
    assert (provenance["framework"], provenance["sampler"], provenance["serving"]) == ("torch", "ddim", "process")
    assert sha256(torch_policy_file) == steered["sha256_before"]  # the base policy is never written

    with np.load(checkpoint.latest(files.checkpoints) / "arrays.npz") as stored:
        names, noises = list(stored), stored["online_buffer/['noises']"]
    assert not any("bc_flow" in name for name in names)  # the base has no parameters in the learner
    assert noises.shape == (250, 5) and 0 < np.abs(noises).max() <= 1.0


def test_a_steered_run_resumes_exactly(steered: dict, tmp_path: Path) -> None:
    finished = steered["result"].run_dir
    spec = steered["spec"].replace(output_dir=str(tmp_path))  # the same run (same id), copied elsewhere
    shutil.copytree(finished, spec.run_dir)
    files = RunDirectory(spec.run_dir)
    earlier, last = sorted(files.checkpoints.glob("step_*"))
    shutil.rmtree(last)  # as a run killed right after its checkpoint at step 200 leaves its directory
    (files.checkpoints / checkpoint.LATEST).write_text(earlier.name)
    files.set_status("running")

    assert run(spec, resume=True, progress=False).status == "finished"
    for name in ("train.csv", "eval.csv"):
        assert measurements(spec.run_dir / name) == measurements(finished / name), name
    final = checkpoint.latest(files.checkpoints) / "arrays.npz"
    assert final.read_bytes() == (checkpoint.latest(finished / "checkpoints") / "arrays.npz").read_bytes()


def test_a_resumed_run_refuses_a_base_policy_file_that_changed(
    make_spec, torch_policy_file: Path, other_torch_policy_file: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "base.pt"
    shutil.copy(torch_policy_file, policy)
    spec = steering_spec(make_spec, policy, online_steps=230, checkpoint_interval=100)
    run(spec, progress=False)
    files = RunDirectory(spec.run_dir)
    files.set_status("running")
    shutil.copy(other_torch_policy_file, policy)  # the same shapes, other weights
    with pytest.raises(RunSpecError, match="changed since this run started"):
        run(spec, resume=True, progress=False)
    assert files.status()["state"] == "running"  # nothing of the run was touched


def test_a_base_policy_for_other_observations_fails_before_anything_is_written(
    make_spec, narrow_torch_policy_file: Path
) -> None:
    spec = steering_spec(make_spec, narrow_torch_policy_file)
    with pytest.raises(RunSpecError, match=r"obs_dim 10 \(this run: 28\)"):
        run(spec, progress=False)
    assert not spec.run_dir.exists() or not (spec.run_dir / "config.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_gpu_base_device_without_a_gpu_fails_before_any_work(make_spec, torch_policy_file: Path) -> None:
    spec = steering_spec(make_spec, torch_policy_file, base_device="cuda")
    with pytest.raises(RunSpecError, match="GPU"):
        run(spec, progress=False)
    assert not (spec.run_dir / "config.json").exists()


def test_a_missing_base_policy_file_fails_before_any_work(make_spec, tmp_path: Path) -> None:
    spec = steering_spec(make_spec, tmp_path / "nowhere.pt")
    with pytest.raises(RunSpecError, match=r"nowhere\.pt"):
        run(spec, progress=False)


def test_dsrl_na_refuses_a_base_policy_file_and_names_dsrl_sac(make_spec, torch_policy_file: Path) -> None:
    hyperparameters = {**make_spec("dsrl_na").hyperparameters, "base_policy": str(torch_policy_file)}
    with pytest.raises(RunSpecError, match="with dsrl_sac"):
        make_spec("dsrl_na", hyperparameters=hyperparameters)


def test_a_run_served_by_a_node_actor_gives_the_numbers_of_the_in_process_run(steered: dict, tmp_path: Path) -> None:
    # The same run (same id) in another directory, its base in one Ray actor that the online collector and two
    # Ray rollout workers call.
    served = steered["spec"].replace(output_dir=str(tmp_path), base_serving="node", eval_workers=2)
    result = run(served, progress=False)
    local = steered["result"]
    assert result.run_dir.name == local.run_dir.name
    for name in ("train.csv", "eval.csv"):
        assert measurements(result.run_dir / name) == measurements(local.run_dir / name), name
    assert json.loads((result.run_dir / "protocol.json").read_text())["base_policy"]["serving"] == "node"
