"""Open-loop execution of action chunks on a real OGBench environment (docs/chunking.md#open-loop-execution): one
policy call per H environment steps, the rest of a chunk dropped when its episode ends, and results that depend on
the episodes alone, not on how they are spread over environments."""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest

from flowsteer.datasets import make_env
from flowsteer.workers.rollout import ActionQueues, run_episodes

TASK = "cube-single-play-singletask-task2-v0"
H = 3
EPISODE_STEPS = 7  # H does not divide it: the third chunk of every episode is cut after one step


def _envs(n: int) -> list[gymnasium.Env]:
    return [gymnasium.wrappers.TimeLimit(make_env(TASK), EPISODE_STEPS) for _ in range(n)]


class _ChunkPolicy:
    """Returns H actions per row whose values encode the key of the call; records every call."""

    def __init__(self, act_dim: int) -> None:
        self.act_dim = act_dim
        self.calls: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray, keys: jax.Array) -> np.ndarray:
        keys = np.asarray(jax.random.key_data(keys) if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys)
        self.calls.append(keys)
        noise = (keys[:, -1:] % 1000).astype(np.float32) / 1000.0  # one number per row, from its key
        steps = np.linspace(-0.5, 0.5, H, dtype=np.float32)[None, :, None]
        return np.broadcast_to(noise[:, None, :] + steps, (len(obs), H, self.act_dim)).reshape(len(obs), -1)


@pytest.fixture(scope="module")
def single_env_run() -> tuple[_ChunkPolicy, list]:
    envs = _envs(1)
    policy = _ChunkPolicy(envs[0].action_space.shape[0])
    episodes = run_episodes(policy, envs, range(2), seed=11)
    envs[0].close()
    return policy, episodes


def test_policy_is_called_once_per_chunk_of_environment_steps(single_env_run) -> None:
    policy, episodes = single_env_run
    assert [e.length for e in episodes] == [EPISODE_STEPS, EPISODE_STEPS]
    assert len(policy.calls) == 2 * -(-EPISODE_STEPS // H)  # steps 0, 3, 6 of each episode


def test_episode_end_drops_the_rest_of_the_chunk(single_env_run) -> None:
    policy, _ = single_env_run
    # Episode 1 starts with a fresh call at its step 0 (key of episode 1, step 0), not with the 2 actions left
    # over from episode 0's last chunk.
    base = jax.random.PRNGKey(11)
    expected = np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.fold_in(base, 1), 0)))
    np.testing.assert_array_equal(policy.calls[3][0], expected)


def test_results_do_not_depend_on_how_episodes_are_spread(single_env_run) -> None:
    _, alone = single_env_run
    envs = _envs(2)
    together = run_episodes(_ChunkPolicy(envs[0].action_space.shape[0]), envs, range(2), seed=11)
    for env in envs:
        env.close()
    assert together == alone


def test_single_actions_refill_every_step() -> None:
    queues = ActionQueues(num_envs=2, act_dim=2)
    queues.refill(np.arange(4, dtype=np.float32).reshape(2, 2), [True, True])
    np.testing.assert_array_equal(queues.pop(1), [2, 3])
    assert queues.empty([1]) and not queues.empty([0])


def test_output_that_is_not_whole_actions_is_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        ActionQueues(num_envs=1, act_dim=5).refill(np.zeros((1, 7), np.float32), [True])
