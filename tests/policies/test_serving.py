"""Serving a torch base policy: in the acting process, or in a Ray actor per node that every caller shares. Both
compute the same function, so they give the same actions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flowsteer.policies.interface import BasePolicyError
from flowsteer.policies.serving import ActorBasePolicy, BasePolicySource, open_base_policy, release_base_actors

# Starts a Ray cluster; in one xdist worker, so it starts once and never beside a second one of this module's.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("serving")]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        release_base_actors()
        ray.shutdown()


@pytest.mark.parametrize("rows", [1, 10])
def test_a_node_actor_decodes_exactly_as_the_policy_in_process(ray_cluster, torch_policy_file: Path, rows) -> None:
    local = open_base_policy(BasePolicySource(str(torch_policy_file)))
    served = open_base_policy(BasePolicySource(str(torch_policy_file), serving="node"))
    assert isinstance(served, ActorBasePolicy) and served.info == local.info
    rng = np.random.default_rng(rows)
    observations = rng.standard_normal((rows, local.info.obs_dim)).astype(np.float32)
    noise = rng.standard_normal((rows, local.info.noise_dim)).astype(np.float32)
    assert np.array_equal(served.decode(observations, noise), local.decode(observations, noise))


def test_runs_on_a_node_share_one_actor_per_policy_file(ray_cluster, torch_policy_file: Path) -> None:
    first = open_base_policy(BasePolicySource(str(torch_policy_file), serving="node"))
    second = open_base_policy(BasePolicySource(str(torch_policy_file), serving="node"))
    assert isinstance(first, ActorBasePolicy)
    calls = ray_cluster.get(first.actor.num_calls.remote())
    second.decode(np.zeros((3, first.info.obs_dim), np.float32), np.zeros((3, first.info.noise_dim), np.float32))
    assert ray_cluster.get(first.actor.num_calls.remote()) == calls + 1  # the second client reached the same actor


def test_an_actor_that_cannot_load_the_file_says_why(ray_cluster, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a TorchScript archive")
    with pytest.raises(BasePolicyError, match=r"broken\.pt"):
        open_base_policy(BasePolicySource(str(broken), serving="node"))


def test_gpu_serving_needs_a_trial_with_a_gpu(ray_cluster, torch_policy_file: Path) -> None:
    with pytest.raises(BasePolicyError, match="base_serving 'node'"):
        open_base_policy(BasePolicySource(str(torch_policy_file), serving="gpu"))


def test_a_node_actor_whose_file_changed_is_replaced(
    ray_cluster, torch_policy_file: Path, other_torch_policy_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "base.pt"
    shutil.copy(torch_policy_file, path)
    before = open_base_policy(BasePolicySource(str(path), serving="node"))
    shutil.copy(other_torch_policy_file, path)  # an earlier run's actor still holds the old weights
    after = open_base_policy(BasePolicySource(str(path), serving="node"))
    local = open_base_policy(BasePolicySource(str(path)))
    assert after.info.sha256 == local.info.sha256 != before.info.sha256
    observations = np.zeros((2, local.info.obs_dim), np.float32)
    noise = np.ones((2, local.info.noise_dim), np.float32)
    assert np.array_equal(after.decode(observations, noise), local.decode(observations, noise))


def test_an_actor_found_by_name_must_hold_the_bytes_the_run_started_with(
    ray_cluster, torch_policy_file: Path, other_torch_policy_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "base.pt"
    shutil.copy(torch_policy_file, path)
    started_with = open_base_policy(BasePolicySource(str(path))).info.sha256
    shutil.copy(other_torch_policy_file, path)
    open_base_policy(BasePolicySource(str(path), serving="node"))  # another run's actor now holds the new file
    with pytest.raises(BasePolicyError, match="changed since this run started"):
        open_base_policy(BasePolicySource(str(path), serving="node", sha256=started_with))  # the resumed run
