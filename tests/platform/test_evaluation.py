"""Evaluation numbers depend on the seed only: not on environments per worker, not on the worker count."""

from __future__ import annotations

import pytest

from flowsteer.platform.evaluation import Evaluator, episode_blocks
from flowsteer.workers.learner import Learner

pytestmark = pytest.mark.integration  # trained agents evaluated in real environments, in process and on Ray


@pytest.fixture(scope="module")
def trained(smoke_cache_module):
    """A briefly trained FQL agent (stochastic at evaluation, so the noise streams matter)."""
    spec, task = smoke_cache_module
    learner = Learner("fql", spec.algo_config(), task.train, seed=0, chunk_size=20)
    learner.train(40)
    task.env.close()
    return spec, learner.policy_state()


@pytest.fixture(scope="module")
def smoke_cache_module(tmp_path_factory):
    from flowsteer.datasets import load_task
    from flowsteer.platform.spec import RunSpec

    # puzzle-3x3: every button press changes the return, so differences in the actions show in the numbers
    cache = tmp_path_factory.mktemp("puzzle-cache")
    from_dict = {
        "algo": "fql",
        "task": "puzzle-3x3-play-singletask-task4-v0",
        "hyperparameters": {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "batch_size": 32},
        "eval_episodes": 4,
        "data": {"source": "generated", "episodes": 2, "episode_steps": 101, "cache_dir": str(cache)},
    }
    spec = RunSpec.from_dict(from_dict)
    task = load_task(spec.task, progress=False, **spec.to_dict()["data"])
    return spec, task


def _evaluate(spec, state, **fields):
    with Evaluator(spec.replace(**fields), spec.algo_config()) as evaluator:
        return evaluator.evaluate(state, seed=123)


def test_environments_per_worker_do_not_change_the_numbers(trained) -> None:
    spec, state = trained
    one = _evaluate(spec, state, eval_envs=1)
    assert _evaluate(spec, state, eval_envs=4) == one
    assert one["episodes"] == 4 and one["success"] * 4 in {0, 1, 2, 3, 4}  # the mean of 4 episodes' 0/1


def test_one_in_process_worker_and_two_ray_workers_give_identical_results(trained) -> None:
    import ray

    spec, state = trained
    local = _evaluate(spec, state, eval_envs=3)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = _evaluate(spec, state, eval_workers=2, eval_envs=3)
    finally:
        ray.shutdown()
    assert remote == local


def test_a_different_seed_gives_different_episodes(trained) -> None:
    spec, state = trained

    with Evaluator(spec.replace(eval_envs=3), spec.algo_config()) as evaluator:
        first = evaluator.evaluate(state, seed=1)
        again = evaluator.evaluate(state, seed=1)
        other = evaluator.evaluate(state, seed=2)
    assert first == again
    assert first["episode_return"] != other["episode_return"]


@pytest.mark.parametrize(("episodes", "workers"), [(1, 1), (1, 3), (5, 2), (7, 3), (10, 4), (50, 8), (3, 8)])
def test_episode_blocks_cover_every_episode_once_in_balanced_blocks(episodes: int, workers: int) -> None:
    blocks = episode_blocks(episodes, workers)
    assert [i for block in blocks for i in block] == list(range(episodes))
    assert len(blocks) == min(episodes, workers) and all(blocks)
    sizes = [len(block) for block in blocks]
    assert max(sizes) - min(sizes) <= 1
