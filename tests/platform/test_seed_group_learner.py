"""The seed-group learner: seeds that do not move keep their state and buffers, and moving seeds do not depend on
them; a seed's checkpoint is a single learner's."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest

from flowsteer.algorithms.registry import make_config
from flowsteer.workers.learner import Learner
from flowsteer.workers.seed_group import SeedGroup

from .conftest import TINY

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def config() -> Any:
    return make_config("fql", overrides=TINY["fql"])


def _rows(tree: Any, i: int) -> list[np.ndarray]:
    return [np.asarray(leaf)[i] for leaf in jax.tree.leaves(tree)]


def _equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_seed_left_out_keeps_its_state_and_the_others_move_as_in_the_full_group(config, smoke_data) -> None:
    full = SeedGroup("fql", config, smoke_data, SEEDS, chunk_size=10)
    partial = SeedGroup("fql", config, smoke_data, SEEDS, chunk_size=10)
    initial = _rows(partial.state, 1)
    full.train_seeds(20, [True, True, True])
    outcomes = partial.train_seeds(20, [True, False, True])
    assert sorted(outcomes) == [0, 2]
    assert _equal(_rows(partial.state, 1), initial)
    assert not _equal(_rows(partial.state, 0), _rows(partial.state, 2))  # the seeds learn apart
    for i in (0, 2):
        assert _equal(_rows(partial.state, i), _rows(full.state, i))


def test_an_online_step_writes_only_the_moving_seeds_buffers(config, smoke_data) -> None:
    group = SeedGroup("fql", config, smoke_data, SEEDS, chunk_size=10)
    group.start_online(buffer_size=len(smoke_data["observations"]) + 10, utd=1)
    before = {k: np.asarray(v) for k, v in group.data.items()}
    index = group.next_index(0)
    transition = {
        "observations": np.full(smoke_data["observations"].shape[1], 0.5, np.float32),
        "actions": np.full(smoke_data["actions"].shape[1], 0.25, np.float32),
        "rewards": np.float32(1.0),
        "masks": np.float32(1.0),
        "terminals": np.float32(0.0),
        "next_observations": np.full(smoke_data["observations"].shape[1], 0.75, np.float32),
    }
    outcomes = group.online_step_seeds({1: transition}, index, update=True)
    assert list(outcomes) == [1] and np.isfinite(outcomes[1]["critic/critic_loss"])
    after = {k: np.asarray(v) for k, v in group.data.items()}
    for key, value in transition.items():
        np.testing.assert_array_equal(after[key][1, index], value)
    for i in (0, 2):
        for key in after:
            np.testing.assert_array_equal(after[key][i], before[key][i], err_msg=f"seed {SEEDS[i]} {key}")


def test_a_grouped_seeds_checkpoint_holds_the_trees_of_the_same_seed_alone(config, smoke_data) -> None:
    group = SeedGroup("fql", config, smoke_data, SEEDS, chunk_size=10)
    alone = Learner("fql", config, smoke_data, SEEDS[2], chunk_size=10)
    grouped = group.checkpoint_trees_of(2, 0)
    single = alone.checkpoint_trees(0)
    paths = jax.tree_util.tree_flatten_with_path(grouped)[0]
    assert [p for p, _ in paths] == [p for p, _ in jax.tree_util.tree_flatten_with_path(single)[0]]
    for mine, theirs in zip(jax.tree.leaves(grouped), jax.tree.leaves(single), strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))  # init under vmap draws the same


def test_a_seed_restored_into_a_group_is_the_checkpointed_state(config, smoke_data) -> None:
    alone = Learner("fql", config, smoke_data, 7, chunk_size=10)
    alone.train(10)
    group = SeedGroup("fql", config, smoke_data, SEEDS, chunk_size=10)
    untouched = _rows(group.state, 0)
    group.restore_seed(1, alone.checkpoint_trees(0), 0)
    assert _equal(_rows(group.state, 1), [np.asarray(x) for x in jax.tree.leaves(alone.state)])
    assert _equal(_rows(group.state, 0), untouched)


def _transitions(data: dict[str, np.ndarray], steps: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    shapes = {k: v.shape[1:] for k, v in data.items() if k != "next_actions"}
    return [{k: rng.normal(size=shape).astype(np.float32) for k, shape in shapes.items()} for _ in range(steps)]


def test_a_grouped_seeds_online_episode_columns_equal_the_single_learners(smoke_data) -> None:
    """Cal-QL's Monte-Carlo returns, written when a seed's episode ends, land in that seed's buffer only, as a
    single learner writes them (balanced sampling: the dataset, then the seed's own online rows)."""
    config = make_config("calql", overrides=TINY["calql"])
    group = SeedGroup("calql", config, smoke_data, SEEDS, chunk_size=10)
    alone = Learner("calql", config, smoke_data, SEEDS[1], chunk_size=10)
    group.start_online(buffer_size=20, utd=1)
    alone.start_online(buffer_size=20, utd=1)
    untouched = {k: np.asarray(v[0]) for k, v in group.data.items()}
    for t, transition in enumerate(_transitions(smoke_data, 5)):
        index = group.next_index(t)
        group.online_step_seeds({1: transition}, index, update=False)
        alone.online_step(transition, index, update=False)
    group.end_episode_of(1)
    alone.end_episode()
    for key, column in alone.data.items():
        np.testing.assert_array_equal(np.asarray(group.data[key][1]), np.asarray(column), err_msg=key)
        np.testing.assert_array_equal(np.asarray(group.data[key][0]), untouched[key], err_msg=key)


def test_a_base_run_installed_in_a_group_is_every_seeds_base(smoke_data) -> None:
    from flowsteer.algorithms.dsrl import base_net

    config = make_config("dsrl_na", overrides=TINY["dsrl_na"])
    group = SeedGroup("dsrl_na", config, smoke_data, SEEDS, chunk_size=10)
    alone = Learner("dsrl_na", config, smoke_data, SEEDS[2], chunk_size=10)
    base = jax.tree.map(lambda x: x + 1.0, jax.device_get(alone.state.params["bc_flow"]))
    network = base_net(config, alone.state.act_dim)
    group.set_base_policy(network, base)
    alone.set_base_policy(network, base)
    grouped, single = group.checkpoint_trees_of(2, 0), alone.checkpoint_trees(0)
    for mine, theirs in zip(jax.tree.leaves(grouped), jax.tree.leaves(single), strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    for i in range(len(SEEDS)):
        for mine, theirs in zip(jax.tree.leaves(group.acting_state(i).params["bc_flow"]), jax.tree.leaves(base),
                                strict=True):  # fmt: skip
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
