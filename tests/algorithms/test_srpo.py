"""SRPO: the policy loss, what it may train, and the IDQL parts it reuses (docs/algorithms.md#srpo)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, perturb, random_transitions

from flowsteer.algorithms import idql, make_config, srpo, to_device_dataset
from flowsteer.algorithms.diffusion import schedule
from flowsteer.algorithms.training import train_step

TINY = {"actor_hidden_dim": 16, "value_hidden_dims": (16, 16), "policy_hidden_dims": (16, 16)}
KEY = jax.random.PRNGKey(3)


def test_srpo_loss_matches_a_hand_computation():
    a = np.array([[0.5, -0.2], [0.1, 0.9], [-0.7, 0.3]])
    eps_hat = np.array([[1.0, 2.0], [-0.5, 0.3], [0.2, -1.1]])
    q_grad = np.array([[0.4, -0.6], [2.0, 1.0], [-0.3, 0.5]])
    w = np.array([0.196, 0.565, 0.994])
    beta = 0.3
    loss, score_loss, q_loss = srpo.srpo_loss(*(jnp.asarray(x, jnp.float32) for x in (a, eps_hat, q_grad, w)), beta)
    score = np.mean([w[b] * sum(eps_hat[b, d] * a[b, d] for d in range(2)) for b in range(3)])
    guided = np.mean([sum(q_grad[b, d] * a[b, d] for d in range(2)) for b in range(3)])
    np.testing.assert_allclose(float(score_loss), score, rtol=1e-6)
    np.testing.assert_allclose(float(q_loss), -beta * guided, rtol=1e-6)
    np.testing.assert_allclose(float(loss), score - beta * guided, rtol=1e-6)


@pytest.fixture(scope="module")
def initial_state():
    """A fresh SRPO state of the TINY networks (the other fields do not change `init`); compiled, once."""
    return jax.jit(srpo.init, static_argnums=(0, 1, 2))(srpo.SRPOConfig(**TINY), OBS_DIM, ACT_DIM, KEY)


@pytest.fixture(scope="module")
def trained_looking_state(initial_state):
    """An SRPO state whose slow copies differ from the online networks, so reading the wrong one shows."""
    slow = jax.jit(lambda tp: {name: perturb(p, key=i) for i, (name, p) in enumerate(tp.items())})
    return initial_state.replace(target_params=slow(initial_state.target_params))


@pytest.mark.xdist_group("srpo-states")  # one xdist worker builds the states once
@pytest.mark.integration  # over ~10 s on 2 cores (compiles IDQL's networks' init and the policy gradient)
@pytest.mark.parametrize(("regq", "ema_score"), [(False, False), (True, True)])
def test_policy_gradient_is_the_frozen_score_minus_beta_times_the_mean_target_q_gradient(
    trained_looking_state, batch, regq, ema_score
):
    config = srpo.SRPOConfig(**TINY, beta=0.7, regq=regq, ema_score=ema_score)
    critic, _, noise_net = idql.networks(config, ACT_DIM)
    obs = batch["observations"]

    @jax.jit
    def got_and_expected(state):
        theta = state.params["policy"]
        actions, pullback = jax.vjp(lambda p: srpo.policy_actions(config, p, obs, ACT_DIM), theta)
        # The draws of policy_loss: t, then z, from split(key); ε̂ from the chosen noise net with dropout off.
        time_key, noise_key = jax.random.split(KEY)
        t = jax.random.randint(time_key, (obs.shape[0],), 0, config.diffusion_steps)
        alpha_hat = jnp.asarray(schedule(config.diffusion_steps)[2])[t][:, None]
        noisy = jnp.sqrt(alpha_hat) * actions + jnp.sqrt(1 - alpha_hat) * jax.random.normal(noise_key, actions.shape)
        behavior = state.target_params["behavior"] if ema_score else state.params["behavior"]
        eps_hat = noise_net.apply(behavior, obs, noisy, t[:, None].astype(jnp.float32))
        g = jax.vmap(jax.grad(lambda a, s: critic.apply(state.target_params["critic"], s, a).mean()))(actions, obs)
        if regq:
            g = g / jnp.sqrt(jnp.mean(g**2, axis=-1, keepdims=True))
        expected = pullback(((1 - alpha_hat) * eps_hat - config.beta * g) / obs.shape[0])[0]
        got = jax.grad(
            lambda p: srpo.policy_loss(config, {**state.params, "policy": p}, state.target_params, batch, KEY)[0]
        )(theta)
        return got, expected

    got, expected = got_and_expected(trained_looking_state)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.xdist_group("srpo-states")  # one xdist worker builds the states once
@pytest.mark.integration  # over ~10 s on 2 cores (the gradient with respect to every network)
def test_policy_loss_trains_only_the_policy(trained_looking_state, batch):
    config, state = srpo.SRPOConfig(**TINY), trained_looking_state

    def loss(params, target_params):
        return srpo.policy_loss(config, params, target_params, batch, KEY)[0]

    grads, target_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(state.params, state.target_params)
    norms = {name: float(optax.tree.norm(g)) for name, g in grads.items()}
    assert norms.pop("policy") > 0
    assert norms == {"behavior": 0.0, "critic": 0.0, "value": 0.0}
    assert {name: float(optax.tree.norm(g)) for name, g in target_grads.items()} == {"behavior": 0.0, "critic": 0.0}


@pytest.fixture(scope="module")
def staged_updates(initial_state):
    """Two SRPO updates with the policy starting at the second, and IDQL's update from the same first state."""
    dataset = to_device_dataset(random_transitions(200, seed=1))
    config = srpo.SRPOConfig(**TINY, batch_size=16, critic_batch_size=8, policy_start_step=1)
    s0 = initial_state
    step = jax.jit(lambda s: train_step(srpo.update, config, s, dataset))
    s1, m1 = step(s0)
    s2, m2 = step(s1)
    idql_s1, _ = jax.jit(lambda s: train_step(idql.update, config, s, dataset))(s0)
    return s0, (s1, m1), (s2, m2), idql_s1


@pytest.mark.xdist_group("srpo-states")  # one xdist worker builds the states once
@pytest.mark.integration  # over ~10 s on 2 cores (compiles the SRPO and the IDQL update)
def test_behaviour_model_and_value_functions_train_as_in_idql(staged_updates):
    _, (s1, _), _, idql_s1 = staged_updates
    for name in ("behavior", "critic", "value"):
        for got, want in zip(jax.tree.leaves(s1.params[name]), jax.tree.leaves(idql_s1.params[name]), strict=True):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(jax.tree.leaves(s1.target_params), jax.tree.leaves(idql_s1.target_params), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.xdist_group("srpo-states")  # one xdist worker builds the states once
@pytest.mark.integration  # shares the compiled updates of the test above
def test_the_policy_waits_for_policy_start_step_and_logs_nan_until_then(staged_updates):
    s0, (s1, m1), (s2, m2), _ = staged_updates
    unchanged = jax.tree.leaves(jax.tree.map(jnp.array_equal, s0.params["policy"], s1.params["policy"]))
    assert all(unchanged)
    assert all(np.isnan(float(m1[name])) for name in srpo.POLICY_METRICS)
    assert float(optax.tree.norm(jax.tree.map(jnp.subtract, s2.params["policy"], s1.params["policy"]))) > 0
    assert all(np.isfinite(float(m2[name])) for name in srpo.POLICY_METRICS)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("beta", -0.1, "beta must be a number >= 0"),
        ("policy_start_step", -1, "policy_start_step must be an integer >= 0"),
        ("policy_lr", 0.0, "policy_lr must be a number > 0"),
        ("policy_hidden_dims", (), "policy_hidden_dims must be a non-empty list of integers"),
    ],
)
def test_out_of_range_policy_settings_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        make_config("srpo", overrides={field: value})


def test_presets_give_the_paper_beta_and_the_official_maze_switches():
    cube = make_config("srpo", "cube-single-play-singletask-task2-v0")
    maze = make_config("srpo", "antmaze-large-navigate-singletask-task1-v0")
    assert (cube.beta, cube.regq, cube.policy_hidden_dims, cube.expectile) == (0.03, False, (256, 256), 0.9)
    assert (maze.beta, maze.regq, maze.policy_hidden_dims, maze.expectile) == (0.3, True, (256,) * 4, 0.7)
