"""A sweep that steers one torch base policy file across seeds and hyperparameters (DSRL-SAC, online only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowsteer.platform.spec import RunSpecError
from flowsteer.sweeps.cluster import local_temp_dir
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import SweepSpecError, load_sweep

pytestmark = pytest.mark.integration  # a real sweep on a private Ray cluster

TINY_DSRL_SAC = {
    "actor_hidden_dims": [32, 32],
    "value_hidden_dims": [32, 32],
    "batch_size": 32,
    "warmup_steps": 20,
}
ONLINE = {"offline_steps": 0, "online_steps": 40, "eval_interval": 40, "checkpoint_interval": 40}


def test_a_sweep_steers_one_base_policy_file_across_seeds_and_noise_bounds(
    write_sweep, reaper, torch_policy_file: Path
) -> None:
    algorithms = {
        "dsrl_sac": {
            "hyperparameters": TINY_DSRL_SAC | {"base_policy": str(torch_policy_file)},
            "grid": {"noise_bound": [0.5, 1.0]},
        }
    }
    spec = load_sweep(write_sweep("steer", algorithms=algorithms, seeds=2, run=ONLINE))
    reaper.append(local_temp_dir(spec.directory))
    outcome = run_sweep(spec, write=lambda line: None)

    assert outcome.counts == {"finished": 4}
    bases = [json.loads((t.spec.run_dir / "protocol.json").read_text())["base_policy"] for t in outcome.trials]
    assert {(b["file"], b["framework"], b["sampler"]) for b in bases} == {(str(torch_policy_file), "torch", "ddim")}
    assert len({b["sha256"] for b in bases}) == 1
    assert sorted(t.spec.algo_config().noise_bound for t in outcome.trials) == [0.5, 0.5, 1.0, 1.0]


def test_a_sweep_refuses_a_base_policy_for_another_task_before_launching(
    write_sweep, narrow_torch_policy_file: Path
) -> None:
    algorithms = {"dsrl_sac": {"hyperparameters": TINY_DSRL_SAC | {"base_policy": str(narrow_torch_policy_file)}}}
    spec = load_sweep(write_sweep("narrow", algorithms=algorithms, run=ONLINE))
    with pytest.raises(RunSpecError, match=r"obs_dim 10 \(this run: 28\)"):
        run_sweep(spec, write=lambda line: None)
    assert not spec.runs_dir.exists() or not any(spec.runs_dir.iterdir())  # nothing launched


def test_gpu_serving_without_a_gpu_share_per_trial_is_refused(write_sweep, torch_policy_file: Path) -> None:
    algorithms = {"dsrl_sac": {"hyperparameters": TINY_DSRL_SAC | {"base_policy": str(torch_policy_file)}}}
    path = write_sweep("gpu", algorithms=algorithms, run=ONLINE | {"base_serving": "gpu"})
    with pytest.raises(SweepSpecError, match=r"resources\.gpu"):
        load_sweep(path)
