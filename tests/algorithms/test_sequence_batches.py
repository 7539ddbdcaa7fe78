"""Chunk sequence batches (docs/chunking.md#sequence-batches): hand-computed n-step sums, masks and validity at
episode ends, starts that stay inside the rows in use, and the same chunks from the online replay buffer as from
a dataset of the same transitions."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsteer.algorithms.training import (
    balanced_starts,
    draw_batch,
    online_update_fn,
    sample_batch,
    sample_sequences,
    sequence_batch,
)

GAMMA = 0.5
H = 3


def _two_episodes() -> dict[str, jax.Array]:
    """8 rows: episode A = rows 0-3 (terminal at 3), episode B = rows 4-7 (terminal at 7). Reward of row i is
    i + 1; row 2 reaches success (mask 0). Observations and actions encode the row number."""
    rows = np.arange(8, dtype=np.float32)
    terminals = np.zeros(8, np.float32)
    terminals[[3, 7]] = 1
    masks = np.ones(8, np.float32)
    masks[2] = 0
    return {
        "observations": jnp.asarray(rows[:, None]),
        "next_observations": jnp.asarray(rows[:, None] + 0.5),
        "actions": jnp.asarray(np.stack([rows, -rows], axis=1) / 10),
        "rewards": jnp.asarray(rows + 1),
        "masks": jnp.asarray(masks),
        "terminals": jnp.asarray(terminals),
    }


def _chunks(starts: list[int], size: int = 8) -> dict[str, np.ndarray]:
    batch = sequence_batch(_two_episodes(), jnp.asarray(starts), H, GAMMA, size)
    return {k: np.asarray(v) for k, v in batch.items()}


def test_chunk_inside_one_episode_sums_discounted_rewards_and_bootstraps_after_it() -> None:
    chunk = _chunks([0])
    assert chunk["rewards"][0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 3)
    assert chunk["masks"][0] == 0  # row 2 reached success: no bootstrap
    assert chunk["next_observations"][0, 0] == 2.5  # s_{t+H}: the next observation of row t + H − 1
    assert chunk["valid"][0] == 1
    np.testing.assert_array_equal(chunk["valid_steps"][0], [1, 1, 1])


def test_actions_are_flattened_time_major() -> None:
    chunk = _chunks([4])
    np.testing.assert_allclose(chunk["actions"][0], [0.4, -0.4, 0.5, -0.5, 0.6, -0.6])
    assert chunk["observations"][0, 0] == 4


def test_episode_end_inside_a_chunk_makes_it_invalid_and_stops_the_sums_there() -> None:
    chunk = _chunks([2])  # rows 2, 3 | 4: episode A ends at position 1
    np.testing.assert_array_equal(chunk["valid_steps"][0], [1, 1, 0])
    assert chunk["valid"][0] == 0
    assert chunk["rewards"][0] == pytest.approx(3 + 0.5 * 4)  # row 4 belongs to the next episode
    assert chunk["next_observations"][0, 0] == 3.5  # frozen at the episode's last next observation
    assert chunk["terminals"][0] == 1


def test_terminal_at_the_last_position_keeps_the_chunk_valid() -> None:
    chunk = _chunks([1])  # rows 1, 2, 3: the episode ends exactly with the chunk
    assert chunk["valid"][0] == 1
    assert chunk["terminals"][0] == 1
    assert chunk["rewards"][0] == pytest.approx(2 + 0.5 * 3 + 0.25 * 4)


def test_rows_beyond_the_rows_in_use_end_the_chunk() -> None:
    chunk = _chunks([4], size=6)  # rows 4, 5 written; row 6 not yet
    np.testing.assert_array_equal(chunk["valid_steps"][0], [1, 1, 0])
    assert chunk["next_observations"][0, 0] == 5.5


def test_next_actions_are_the_following_chunk_clamped_to_the_last_row() -> None:
    chunk = _chunks([0, 5])
    np.testing.assert_allclose(chunk["next_actions"][0], [0.3, -0.3, 0.4, -0.4, 0.5, -0.5])
    np.testing.assert_allclose(chunk["next_actions"][1], [0.7, -0.7] * 3)


def test_sampled_starts_leave_room_for_a_whole_chunk() -> None:
    batch = sample_sequences(_two_episodes(), jax.random.PRNGKey(0), 4096, H, GAMMA)
    starts = np.asarray(batch["observations"][:, 0]).astype(int)
    assert set(starts) == set(range(8 - H + 1))


def test_balanced_starts_keep_each_half_in_its_rows() -> None:
    starts = np.asarray(balanced_starts(jax.random.PRNGKey(1), 4096, offline_rows=100, size=130, horizon=5))
    assert starts[:2048].min() == 0 and starts[:2048].max() == 95
    assert starts[2048:].min() == 100 and starts[2048:].max() == 125


@dataclass(frozen=True)
class _Config:
    batch_size: int = 64
    discount: float = GAMMA
    action_chunk: int = 1


def test_single_step_draw_is_the_uniform_transition_batch() -> None:
    data, key = _two_episodes(), jax.random.PRNGKey(3)
    drawn = draw_batch(_Config(), data, key)
    expected = sample_batch(data, key, 64)
    assert drawn.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(np.asarray(drawn[name]), np.asarray(expected[name]))


def test_online_buffer_gives_the_chunks_of_a_dataset_with_the_same_transitions() -> None:
    episodes = _two_episodes()
    rows = len(episodes["rewards"])
    head = 5  # dataset rows before the online ones
    buffer = {k: jnp.zeros((head + rows + 4, *v.shape[1:]), v.dtype) for k, v in episodes.items()}
    buffer["next_actions"] = jnp.zeros_like(buffer["actions"])
    step = online_update_fn(lambda config, state, batch: (state, {}), _Config(action_chunk=H), utd=1)
    for i in range(rows):
        transition = {k: np.asarray(v[i]) for k, v in episodes.items()}
        _, buffer, _ = step(None, buffer, transition, head + i, head + i + 1, update=False)
    starts = jnp.arange(rows - H + 1)
    from_buffer = sequence_batch(buffer, starts + head, H, GAMMA, head + rows)
    from_dataset = sequence_batch(episodes, starts, H, GAMMA, rows)
    assert from_buffer.keys() == from_dataset.keys()
    for name in from_dataset:
        np.testing.assert_array_equal(np.asarray(from_buffer[name]), np.asarray(from_dataset[name]), err_msg=name)


def test_a_chunked_learner_refuses_a_replay_buffer_that_would_wrap() -> None:
    from algo_helpers import random_transitions

    from flowsteer.algorithms import make_config
    from flowsteer.workers.learner import Learner

    tiny = {"actor_hidden_dims": (8,), "value_hidden_dims": (8,), "batch_size": 4}
    learner = Learner("fql", make_config("fql", overrides=tiny, action_chunk=3), random_transitions(50), seed=0)
    learner.check_chunk_buffer(buffer_size=80, online_steps=30)  # 50 dataset rows + 30 online rows fit
    with pytest.raises(ValueError, match=r"holds 30 online transitions but the run collects 31.*buffer_size to 81"):
        learner.check_chunk_buffer(buffer_size=80, online_steps=31)
