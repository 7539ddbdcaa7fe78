"""The chunked, vmapped and single-step paths give the same numbers; the same seed gives the same numbers.

Tolerance: the scanned and vmapped programs are compiled differently from the single step, so float32
results may differ in the last bits; we compare with rtol = 1e-5, atol = 1e-6 (float32 rounding, not
algorithmic slack). Re-running the same program with the same seed must be bitwise identical.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, random_transitions

from flowsteer.algorithms import (
    ALGORITHMS,
    get_algorithm,
    init_seeds,
    make_config,
    make_update_chunk,
    sample_batch,
    to_device_dataset,
)
from flowsteer.algorithms.columns import dataset_column
from flowsteer.algorithms.training import train_step

RTOL, ATOL = 1e-5, 1e-6
TINY_DSRL = {
    **{k: (16, 16) for k in ("actor_hidden_dims", "value_hidden_dims", "base_hidden_dims")},
    "num_critics": 2,
    "batch_size": 16,
    "flow_steps": 3,
}
TINY = {
    "bc": {"actor_hidden_dims": (16, 16), "batch_size": 16},
    "iql": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16},
    "rebrac": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "alpha_actor": 0.1},
    "ifql": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "num_samples": 4},
    "idql": {"actor_hidden_dim": 16, "value_hidden_dims": (16, 16), "batch_size": 16, "critic_batch_size": 8},
    "fql": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16},
    "flow_bc": {"actor_hidden_dims": (16, 16), "batch_size": 16},
    "dsrl_na": {**TINY_DSRL, "base_steps": 2},
    "dsrl_sac": TINY_DSRL,
    "cac": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "num_samples": 4},
    "srpo": {
        "actor_hidden_dim": 16,
        "value_hidden_dims": (16, 16),
        "policy_hidden_dims": (16, 16),
        "batch_size": 16,
        "critic_batch_size": 8,
    },
    "fawac": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "flow_steps": 3},
    "fbrac": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "flow_steps": 3},
    "rlpd": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16},
    "calql": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "cql_n_actions": 3},
    "bfn": {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 16, "num_samples": 4},
}
# Every update a learner has: steering learners also pretrain their base.
UPDATES = [(algo, "update") for algo in sorted(ALGORITHMS)] + [
    (algo, "pretrain_update") for algo in sorted(ALGORITHMS) if ALGORITHMS[algo].steering is not None
]


def assert_trees_close(a, b, rtol: float = RTOL, atol: float = ATOL) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def setup(algo: str):
    alg = get_algorithm(algo)
    config = make_config(algo, overrides=TINY[algo])
    return alg, config


def test_every_algorithm_has_a_tiny_config():
    assert set(TINY) == set(ALGORITHMS)


def update_and_data(algo: str, which: str, dataset: dict, config) -> tuple:
    """The update `which` of `algo`, and the data it learns from: DSRL-SAC's steering update reads the noise
    that online collection stores (random actions stand in for it here); Cal-QL reads the Monte-Carlo returns
    the learner adds to the dataset."""
    alg = get_algorithm(algo)
    if which == "pretrain_update":
        return alg.steering.pretrain_update, dataset
    columns = alg.steering.online_columns if alg.steering is not None else ()
    host = {k: np.asarray(v) for k, v in dataset.items()}
    episode_columns = {c.name: jnp.asarray(dataset_column(config, c, host)) for c in alg.episode_columns}
    return alg.update, dataset | {name: dataset["actions"] for name in columns} | episode_columns


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
@pytest.mark.parametrize(("algo", "which"), UPDATES)
def test_chunked_update_equals_single_steps(algo, which, dataset):
    alg, config = setup(algo)
    update, dataset = update_and_data(algo, which, dataset, config)
    state = alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    chunked, chunk_metrics = make_update_chunk(update, config, 4)(state, dataset)
    step = jax.jit(lambda s: train_step(update, config, s, dataset))
    single = state
    for i in range(4):
        single, metrics = step(single)
        assert_trees_close({k: v[i] for k, v in chunk_metrics.items()}, metrics)
    assert_trees_close(chunked, single)
    assert int(chunked.step) == 4


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
@pytest.mark.parametrize("algo", ["fql", "rebrac", "idql"])
def test_vmapped_seeds_equal_seeds_run_one_by_one(algo, dataset):
    alg, config = setup(algo)
    seeds = [0, 3]
    states = init_seeds(alg.init, config, OBS_DIM, ACT_DIM, seeds)
    states, metrics = make_update_chunk(alg.update, config, 3, vmap_seeds=True)(states, dataset)
    chunk = make_update_chunk(alg.update, config, 3)
    for i, seed in enumerate(seeds):
        alone, alone_metrics = chunk(alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(seed)), dataset)
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], states), alone)
        assert_trees_close({k: v[i] for k, v in metrics.items()}, alone_metrics)


def test_seeds_differ_and_same_seed_repeats_bitwise(dataset):
    alg, config = setup("fql")
    chunk = make_update_chunk(alg.update, config, 3)
    run = [chunk(alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(s)), dataset)[0] for s in (0, 0, 1)]
    for x, y in zip(jax.tree.leaves(run[0]), jax.tree.leaves(run[1]), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(
        run[0].params["critic"]["params"]["VmapMLP_0"]["Dense_0"]["kernel"],
        run[2].params["critic"]["params"]["VmapMLP_0"]["Dense_0"]["kernel"],
    )


def test_device_dataset_clips_actions_and_adds_next_actions():
    data = random_transitions(5)
    data["actions"][0] = [1.0, -1.0]
    device = to_device_dataset(data)
    assert float(abs(device["actions"]).max()) <= 1 - 1e-5 + 1e-7
    np.testing.assert_allclose(device["next_actions"][:-1], device["actions"][1:])
    np.testing.assert_allclose(device["next_actions"][-1], device["actions"][-1])
    with pytest.raises(ValueError, match="rewards"):
        to_device_dataset({k: v for k, v in data.items() if k != "rewards"})


def test_batches_are_drawn_from_the_dataset(dataset):
    batch = sample_batch(dataset, jax.random.PRNGKey(0), 32)
    rows = {tuple(np.round(np.asarray(r), 6)) for r in dataset["observations"]}
    assert all(tuple(np.round(np.asarray(r), 6)) in rows for r in batch["observations"])
    assert batch["actions"].shape == (32, ACT_DIM)
