"""DSRL runs end to end on the generated OGBench smoke dataset: a base policy pretrained inside the run or
loaded from an earlier run (`base_run`), offline and online steps, evaluation, and resume from a checkpoint.

Resume here restarts from the checkpoint before the last one, with the directory left as a run killed right
after that checkpoint leaves it (later CSV rows and checkpoint written, status `running`); test_resume.py
kills a real process with SIGKILL for the mechanics common to all learners.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from flowsteer.cli import main
from flowsteer.platform import checkpoint
from flowsteer.platform.base_policy import load_base_policy
from flowsteer.platform.loop import RunResult, run
from flowsteer.platform.spec import RunSpecError
from flowsteer.policies.interface import BasePolicy, check_base_policy
from flowsteer.rundir import RunDirectory, measurements

pytestmark = pytest.mark.integration  # real DSRL runs


def resume_from_the_checkpoint_before_the_last(spec) -> RunResult:
    """Roll the finished run back to its second-to-last checkpoint, resume it, and check it ends identically."""
    files = RunDirectory(spec.run_dir)
    finished = {name: measurements(spec.run_dir / name) for name in ("train.csv", "eval.csv")}
    earlier, last = sorted(files.checkpoints.glob("step_*"))
    final_arrays = (last / "arrays.npz").read_bytes()
    shutil.rmtree(last)
    (files.checkpoints / checkpoint.LATEST).write_text(earlier.name)
    files.set_status("running")

    resumed = run(spec, resume=True, progress=False)
    assert resumed.status == "finished"
    for name, text in finished.items():
        assert measurements(spec.run_dir / name) == text, name
    assert (checkpoint.latest(files.checkpoints) / "arrays.npz").read_bytes() == final_arrays
    return resumed


def arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(checkpoint.latest(run_dir / "checkpoints") / "arrays.npz") as stored:
        return dict(stored)


def test_dsrl_na_pretrains_its_base_then_steers_offline_and_online(make_spec, tmp_path: Path) -> None:
    # TINY: the first 30 of the 60 offline updates pretrain the base.
    spec = make_spec("dsrl_na", offline_steps=60, online_steps=20, checkpoint_interval=40)
    config = tmp_path / "dsrl_na.yaml"
    config.write_text(yaml.safe_dump(spec.to_dict()))
    assert main(["train", "--config", str(config), "--quiet"]) == 0

    files = RunDirectory(spec.run_dir)
    train = files.rows("train.csv")
    assert [int(r["step"]) for r in train] == [20, 40, 60, 80]
    pretraining, steering = train[0], train[1:]
    # A loss the update did not compute is NaN, never 0.0: the base's once it is frozen, the critic's before.
    assert pretraining["base/bc_flow_loss"] > 0 and np.isnan(pretraining["critic/critic_loss"])
    assert all(np.isnan(r["base/bc_flow_loss"]) and r["critic/critic_loss"] > 0 for r in steering)
    evals = files.rows("eval.csv")
    assert [int(r["step"]) for r in evals] == [60, 80]
    assert all(r["episodes"] == 2 and r["success"] in (0.0, 0.5, 1.0) for r in evals)  # 2 episodes' 0/1 mean
    assert "base_policy" not in json.loads((spec.run_dir / "protocol.json").read_text())

    resume_from_the_checkpoint_before_the_last(spec)  # from step 60 (end of the offline phase) to 80


def test_dsrl_sac_steers_a_flow_bc_run_online_without_changing_it(make_spec) -> None:
    base = run(make_spec("flow_bc", output="base", offline_steps=40, eval_interval=40), progress=False)
    # Online checkpoints come at episode ends (200 steps on cube-single): one at 200, the last at 250.
    hyperparameters = {**make_spec("dsrl_sac").hyperparameters, "base_run": str(base.run_dir)}
    spec = make_spec(
        "dsrl_sac",
        offline_steps=0,
        online_steps=250,
        eval_interval=125,
        log_interval=50,
        checkpoint_interval=100,
        hyperparameters=hyperparameters | {"warmup_steps": 220},  # the checkpoint at 200 falls inside the warm-up
    )
    result = run(spec, progress=False)
    assert result.status == "finished" and result.step == 250
    assert [int(r["step"]) for r in RunDirectory(result.run_dir).rows("eval.csv")] == [125, 250]
    # The first 220 online steps roll out the base policy and update nothing (every metric NaN); then SAC learns.
    train = RunDirectory(result.run_dir).rows("train.csv")
    assert [int(r["step"]) for r in train] == [50, 100, 150, 200, 250]
    assert all(np.isnan(v) for r in train[:4] for k, v in r.items() if k not in ("step", "wall_time"))
    assert train[4]["critic/critic_loss"] > 0

    provenance = json.loads((result.run_dir / "protocol.json").read_text())["base_policy"]
    assert provenance["run_id"] == base.run_dir.name and provenance["algo"] == "flow_bc"
    assert provenance["step"] == 40
    steered, pretrained = arrays(result.run_dir), arrays(base.run_dir)
    base_keys = [k for k in pretrained if k.startswith("state/.params['bc_flow']")]
    assert base_keys and all(np.array_equal(steered[k], pretrained[k]) for k in base_keys)  # bitwise unchanged
    # The replay buffer holds the 250 online transitions only, with their noise inside the bound: N(0, I) clipped
    # to it during the warm-up (so some noise sits exactly on it), the noise policy's tanh-squashed noise after.
    noises = steered["online_buffer/['noises']"]
    assert noises.shape[0] == 250 and 0 < np.abs(noises).max() <= 1.0
    assert np.any(np.abs(noises[:220]) == 1.0) and not np.any(np.abs(noises[220:]) == 1.0)

    resume_from_the_checkpoint_before_the_last(spec)  # from the checkpoint at 200, inside the warm-up, to 250

    other_shape = make_spec(
        "dsrl_sac", offline_steps=0, online_steps=10, hyperparameters=hyperparameters | {"base_hidden_dims": [16]}
    )
    with pytest.raises(RunSpecError, match="differs from this config's base_hidden_dims"):
        run(other_shape, progress=False)


@pytest.mark.parametrize(
    ("algo", "fields", "message"),
    [
        ("dsrl_na", {"hyperparameters": {"base_steps": 0}}, "would never be trained"),
        ("dsrl_na", {"online_steps": 10, "hyperparameters": {"base_steps": 100}}, "still be pretraining"),
        ("dsrl_na", {"hyperparameters": {"base_run": "runs/x", "base_steps": 10}}, "leave it unset"),
        ("dsrl_sac", {"offline_steps": 0, "online_steps": 10}, "no base policy"),
        ("dsrl_sac", {"hyperparameters": {"base_run": "runs/x"}}, "set offline_steps to 0"),
        ("dsrl_sac", {"online_steps": 5}, r"online_steps \(5\) must exceed warmup_steps \(5\)"),
        ("dsrl_na", {"hyperparameters": {"noise_bound": 0.0}}, "noise_bound must be > 0"),
    ],
)
def test_a_dsrl_run_without_a_usable_base_fails_before_any_work(make_spec, algo, fields, message) -> None:
    with pytest.raises(RunSpecError, match=message):
        make_spec(algo, **fields)


def test_base_run_must_be_a_finished_run(make_spec, tmp_path: Path) -> None:
    hyperparameters = {"base_run": str(tmp_path), "warmup_steps": 0}
    spec = make_spec("dsrl_sac", offline_steps=0, online_steps=10, hyperparameters=hyperparameters)
    with pytest.raises(RunSpecError, match="not a flowsteer run directory"):
        run(spec, progress=False)


def test_a_chunked_dsrl_na_run_steers_only_a_base_trained_with_the_same_action_chunk(make_spec) -> None:
    # TINY: the base run pretrains its chunk flow (H = 2, so over 2·d values) for 4 updates, then steers for 2.
    hyperparameters = make_spec("dsrl_na").hyperparameters
    chunked = {"action_chunk": 2, "log_interval": 2, "chunk_size": 2}
    base = run(
        make_spec("dsrl_na", output="base", offline_steps=6, eval_interval=6, eval_episodes=0, checkpoint_interval=6,
                  hyperparameters=hyperparameters | {"base_steps": 4}, **chunked),
        progress=False,
    )  # fmt: skip
    assert base.status == "finished"
    steering = {k: v for k, v in hyperparameters.items() if k != "base_steps"} | {"base_run": str(base.run_dir)}

    # The same H: the chunk flow is installed unchanged and steered; evaluation executes its chunks open loop.
    spec = make_spec("dsrl_na", offline_steps=2, eval_interval=2, eval_episodes=1, eval_envs=1, checkpoint_interval=2,
                     hyperparameters=steering, **chunked)  # fmt: skip
    result = run(spec, progress=False)
    assert result.status == "finished" and RunDirectory(result.run_dir).rows("eval.csv")[0]["episodes"] == 1
    steered, pretrained = arrays(result.run_dir), arrays(base.run_dir)
    base_keys = [k for k in pretrained if k.startswith("state/.params['bc_flow']")]
    assert base_keys and all(np.array_equal(steered[k], pretrained[k]) for k in base_keys)

    # Another H, or a single-step learner: refused before any work, naming action_chunk and the fix.
    other = make_spec("dsrl_na", offline_steps=2, hyperparameters=steering, action_chunk=3)
    with pytest.raises(RunSpecError, match=r"action_chunk 2 .*this run has action_chunk 3.*Run this one with"):
        run(other, progress=False)
    assert not (other.run_dir / "config.json").exists()
    sac_steering = make_spec("dsrl_sac").hyperparameters | {"base_run": str(base.run_dir)}
    single = make_spec("dsrl_sac", offline_steps=0, online_steps=10, hyperparameters=sac_steering)
    with pytest.raises(RunSpecError, match="this run has action_chunk 1"):
        run(single, progress=False)


def test_a_base_run_is_a_steerable_base_policy(make_spec) -> None:
    base = run(make_spec("flow_bc", output="base", offline_steps=20, eval_interval=20), progress=False)
    policy = load_base_policy(base.run_dir, obs_dim=28, act_dim=5)
    assert isinstance(policy, BasePolicy)
    check_base_policy(policy, "the flow_bc run")  # the right shapes, the same actions for the same noise
    last = checkpoint.latest(base.run_dir / "checkpoints")
    assert (policy.info.framework, policy.info.sampler, policy.info.file) == (
        "flowsteer",
        "euler",
        str(last / "arrays.npz"),
    )
    noise = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    assert not np.array_equal(*policy.decode(np.zeros((2, 28), np.float32), noise))  # the noise steers it
