"""Learners over chunks of H actions (Q-chunking; docs/chunking.md): they train on chunk batches and act in chunks,
H = 1 trains exactly as the single-step learner, an invalid chunk adds nothing to the update, and the bootstrap
discounts by γ^H."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, dense, np_batch, perturb, q_heads, random_transitions, set_dense
from test_training import TINY

from flowsteer.algorithms import bc, bfn, fql, get_algorithm, hyperparameter_names, make_config, to_device_dataset
from flowsteer.algorithms.chunks import step_weights
from flowsteer.algorithms.flow import flow_matching_loss
from flowsteer.algorithms.training import draw_batch

H = 3
CHUNKED = ["fql", "bc", "flow_bc", "rebrac", "ifql", "bfn"]
WITH_CRITIC = ["fql", "rebrac", "ifql", "bfn"]  # the learners with a TD loss
STARTS = jnp.arange(0, 160, 10)  # 16 chunk starts


@pytest.fixture(scope="module")
def episodes() -> dict:
    """Two hundred random transitions in episodes of 7 steps, on the device."""
    data = random_transitions(200, seed=1)
    data["terminals"][6::7] = 1.0
    return to_device_dataset(data)


@functools.cache
def chunk_setup(algo: str, horizon: int = H):
    """(algorithm, config, initial state, jitted update) of `algo` over chunks of `horizon`, compiled once."""
    alg = get_algorithm(algo)
    # 3 Euler steps: the flow learners' updates unroll them, and 10 compile much slower.
    fewer_steps = {"flow_steps": 3} if "flow_steps" in hyperparameter_names(algo) else {}
    config = make_config(algo, overrides=TINY[algo] | fewer_steps, action_chunk=horizon)
    state = alg.init(config, OBS_DIM, ACT_DIM * horizon, jax.random.PRNGKey(0))
    return alg, config, state, jax.jit(lambda s, b: alg.update(config, s, b))


def chunk_batch(episodes: dict, config) -> dict:
    """The batch of chunks that training draws for `config` (`draw_batch`), at a fixed key."""
    return draw_batch(config, episodes, jax.random.PRNGKey(5))


def assert_trees_equal(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("algo", CHUNKED)
def test_update_on_chunks_is_finite_and_act_returns_a_chunk(algo, episodes):
    alg, config, state, update = chunk_setup(algo)
    batch = chunk_batch(episodes, config)
    assert float(batch["valid"].min()) == 0.0  # some chunks cross an episode end
    state, metrics = update(state, batch)
    assert all(np.isfinite(v) for v in jax.tree.leaves(metrics) if not np.isnan(v))
    actions = alg.act(config, state, batch["observations"][:5], jax.random.PRNGKey(1))
    assert actions.shape == (5, ACT_DIM * H)


@pytest.mark.parametrize("algo", CHUNKED)
def test_length_one_chunks_train_exactly_as_single_steps(algo, episodes):
    """A chunk batch of H = 1 with every sample valid gives bit-identical parameters to the single-step batch."""
    _, _, state, update = chunk_setup(algo, horizon=1)
    single = {k: v[STARTS] for k, v in episodes.items()}
    ones = jnp.ones(STARTS.shape[0])
    chunk = single | {"valid": ones, "valid_steps": ones[:, None]}
    assert_trees_equal(update(state, chunk)[0].params, update(state, single)[0].params)


def garbled(batch: dict, sample: int, valid: float) -> dict:
    """`batch` with `sample`'s TD-target inputs replaced by large garbage and its `valid` set."""
    out = dict(batch)
    for key, value in (("rewards", 1e3), ("masks", 1.0), ("next_observations", 50.0), ("next_actions", -1.0)):
        out[key] = batch[key].at[sample].set(value)
    out["valid"] = batch["valid"].at[sample].set(valid)
    return out


@pytest.mark.parametrize("algo", WITH_CRITIC)
def test_an_invalid_chunk_adds_nothing_to_the_update(algo, episodes):
    _, config, state, update = chunk_setup(algo)
    batch = chunk_batch(episodes, config)
    invalid = batch | {"valid": batch["valid"].at[0].set(0.0)}
    assert_trees_equal(update(state, garbled(batch, 0, 0.0))[0].params, update(state, invalid)[0].params)
    # The control: were the chunk valid, its garbage would change the update.
    valid = batch | {"valid": batch["valid"].at[0].set(1.0)}
    with_garbage, without = update(state, garbled(batch, 0, 1.0))[0].params, update(state, valid)[0].params
    pairs = zip(jax.tree.leaves(with_garbage), jax.tree.leaves(without), strict=True)
    assert any(not np.array_equal(x, y) for x, y in pairs)


def test_step_weights_repeat_each_position_over_its_action_values():
    batch = {"actions": jnp.zeros((1, 6)), "valid_steps": jnp.array([[1.0, 1.0, 0.0]])}
    np.testing.assert_array_equal(step_weights(batch), [[1, 1, 1, 1, 0, 0]])
    assert step_weights({"actions": jnp.zeros((1, 2))}) is None


def test_weighted_flow_matching_keeps_the_masked_values_in_the_mean():
    """QC's per-position mask: mean over every value of w·(v − (x¹ − x⁰))², zeros included."""
    actions = jnp.array([[0.5, -0.25, 0.1, 0.9], [-0.7, 0.3, 0.2, 0.0]])
    weights = jnp.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    key = jax.random.PRNGKey(0)
    noise_key, time_key = jax.random.split(key)
    x0 = np.asarray(jax.random.normal(noise_key, actions.shape), np.float64)
    t = np.asarray(jax.random.uniform(time_key, (2, 1)), np.float64)
    a = np.asarray(actions, np.float64)
    x_t = (1 - t) * x0 + t * a
    expected = np.mean(np.asarray(weights) * (2 * x_t + t - (a - x0)) ** 2)
    loss = flow_matching_loss(lambda x, tt: 2 * x + tt, actions, key, weights)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_fql_bootstraps_with_discount_to_the_power_h():
    """y = Σ-reward + γ^H · mask · Q̄; the target critic is set to the constant 10, so γ^H is read off the loss."""
    config = fql.FQLConfig(actor_hidden_dims=(), value_hidden_dims=(), discount=0.9, action_chunk=H)
    state = fql.init(config, OBS_DIM, ACT_DIM * H, jax.random.PRNGKey(0))
    kernel, _ = dense(state.params["critic"], ("VmapMLP_0", "Dense_0"))
    constant = set_dense(state.params["critic"], ("VmapMLP_0", "Dense_0"), np.zeros_like(kernel), [[10.0]] * 2)
    target = {"critic": constant}
    rng = np.random.default_rng(0)
    batch = {
        "observations": jnp.asarray(rng.normal(size=(4, OBS_DIM)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(4, ACT_DIM * H)), jnp.float32),
        "next_observations": jnp.asarray(rng.normal(size=(4, OBS_DIM)), jnp.float32),
        "rewards": jnp.array([0.5, 1.0, -0.2, 0.0]),
        "masks": jnp.array([1.0, 1.0, 0.0, 1.0]),
        "valid": jnp.array([1.0, 1.0, 1.0, 0.0]),
        "valid_steps": jnp.array([[1.0] * H] * 3 + [[1.0, 0.0, 0.0]]),
    }
    b = np_batch(batch)
    y = b["rewards"] + 0.9**H * b["masks"] * 10.0
    q = q_heads(state.params["critic"], b["observations"], b["actions"])
    expected = np.mean(b["valid"] * (q - y) ** 2)
    loss, _ = fql.critic_loss(config, state.params, target, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_bc_ignores_the_actions_after_an_episode_end():
    """Gaussian BC masks its log-likelihood per position: the third action of a chunk that ended at its second
    position does not change the loss, and it does for a whole chunk."""
    config = bc.BCConfig(actor_hidden_dims=(16,), action_chunk=H)
    params = bc.init(config, OBS_DIM, ACT_DIM * H, jax.random.PRNGKey(0)).params
    rng = np.random.default_rng(0)
    batch = {
        "observations": jnp.asarray(rng.normal(size=(2, OBS_DIM)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(2, ACT_DIM * H)), jnp.float32),
        "valid_steps": jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
    }
    garbage = batch | {"actions": batch["actions"].at[0, -ACT_DIM:].set(0.9)}
    loss = bc.actor_loss(config, params, batch)[0]
    assert bc.actor_loss(config, params, garbage)[0] == loss
    whole = {k: v[1:] for k, v in batch.items()}
    assert (
        bc.actor_loss(config, params, whole | {"actions": whole["actions"].at[0, -ACT_DIM:].set(0.9)})[0]
        != (bc.actor_loss(config, params, whole)[0])
    )


def bfn_case():
    """A linear BFN over chunks whose flow has zero velocity (each candidate is its clipped noise) and whose online
    critic heads read the chunk through two known weight vectors."""
    config = bfn.BFNConfig(actor_hidden_dims=(), value_hidden_dims=(), num_samples=5, discount=0.9, action_chunk=H)
    params = dict(bfn.init(config, OBS_DIM, ACT_DIM * H, jax.random.PRNGKey(0)).params)
    kf, _ = dense(params["bc_flow"], ("MLP_0", "Dense_0"))
    params["bc_flow"] = set_dense(params["bc_flow"], ("MLP_0", "Dense_0"), np.zeros_like(kf), np.zeros(ACT_DIM * H))
    weights = np.stack([np.linspace(-1, 1, ACT_DIM * H), np.linspace(1, 0, ACT_DIM * H)])
    kernel = np.zeros((2, OBS_DIM + ACT_DIM * H, 1))
    kernel[:, OBS_DIM:, 0] = weights
    params["critic"] = set_dense(params["critic"], ("VmapMLP_0", "Dense_0"), kernel, np.zeros((2, 1)))
    return config, params, weights


def best_candidates(key: jax.Array, weights: np.ndarray, batch_size: int, n: int) -> np.ndarray:
    """The clipped noise rows that the mean of the two linear heads rates highest, per state."""
    candidates = np.clip(np.asarray(jax.random.normal(key, (batch_size, n, weights.shape[1])), np.float64), -1, 1)
    q = (candidates @ weights.T).mean(-1)
    return candidates[np.arange(batch_size), q.argmax(-1)]


def test_bfn_acts_with_the_candidate_of_highest_mean_q():
    config, params, weights = bfn_case()
    state = bfn.init(config, OBS_DIM, ACT_DIM * H, jax.random.PRNGKey(0)).replace(params=params)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4, OBS_DIM)), jnp.float32)
    key = jax.random.PRNGKey(2)
    np.testing.assert_allclose(bfn.act(config, state, obs, key), best_candidates(key, weights, 4, 5), rtol=1e-6)


def test_bfn_values_the_online_critics_best_chunk_in_the_target_critic():
    config, params, weights = bfn_case()
    target = {"critic": perturb(params["critic"])}
    rng = np.random.default_rng(1)
    batch = {
        "observations": jnp.asarray(rng.normal(size=(4, OBS_DIM)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(4, ACT_DIM * H)), jnp.float32),
        "next_observations": jnp.asarray(rng.normal(size=(4, OBS_DIM)), jnp.float32),
        "rewards": jnp.array([0.5, 1.0, -0.2, 0.0]),
        "masks": jnp.array([1.0, 0.0, 1.0, 1.0]),
        "valid": jnp.array([1.0, 1.0, 0.0, 1.0]),
    }
    key = jax.random.PRNGKey(4)
    b = np_batch(batch)
    next_a = best_candidates(key, weights, 4, 5)
    y = b["rewards"] + 0.9**H * b["masks"] * q_heads(target["critic"], b["next_observations"], next_a).mean(0)
    q = q_heads(params["critic"], b["observations"], b["actions"])
    loss, _ = bfn.critic_loss(config, params, target, batch, key)
    np.testing.assert_allclose(loss, np.mean(b["valid"] * (q - y) ** 2), rtol=1e-5)
