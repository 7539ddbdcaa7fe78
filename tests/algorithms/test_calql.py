"""Cal-QL: Monte-Carlo returns of stored trajectories, where the calibration bound applies, and gradient routing."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsteer.algorithms import calql, make_config
from flowsteer.algorithms.columns import dataset_column

TINY = {"actor_hidden_dims": (8,), "value_hidden_dims": (8,), "batch_size": 8, "cql_n_actions": 5}
# One trajectory: −1, −1, success (r = 0, mask = 0), then two more failing steps.
REWARDS = np.array([-1.0, -1.0, 0.0, -1.0, -1.0], np.float32)
MASKS = np.array([1.0, 1.0, 0.0, 1.0, 1.0], np.float32)


def _returns(rewards=REWARDS, masks=MASKS, **overrides) -> np.ndarray:
    config = make_config("calql", overrides={"discount": 0.5} | overrides)
    return calql.mc_returns(config, {"rewards": rewards, "masks": masks})


def test_mc_returns_restart_at_a_success_and_give_a_constant_failing_tail_its_infinite_horizon_value() -> None:
    # Tail after the success: r = −1 throughout, so it continues forever: −1/(1 − 0.5) = −2 at rows 3 and 4.
    # Row 2 is the success: 0. Row 1: −1 + 0.5·0 = −1; row 0: −1 + 0.5·(−1) = −1.5.
    np.testing.assert_allclose(_returns(), [-1.5, -1.0, 0.0, -2.0, -2.0])


def test_mc_returns_of_a_truncated_tail_stop_at_the_trajectory_end() -> None:
    np.testing.assert_allclose(_returns(mc_tail="truncated"), [-1.5, -1.0, 0.0, -1.5, -1.0])


def test_a_varying_failing_tail_is_summed_unless_the_rule_bootstraps_the_last_reward() -> None:
    rewards = np.array([-1.0, 0.0, -2.0, -1.0], np.float32)
    masks = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    # constant_failure: not constant, so a plain sum: row 3 −1, row 2 −2 + 0.5·(−1) = −2.5.
    np.testing.assert_allclose(_returns(rewards, masks), [-1.0, 0.0, -2.5, -1.0])
    # bootstrap_last: the tail continues with −1/(1 − 0.5) = −2: row 3 −1 − 1 = −2, row 2 −2 − 1 = −3.
    np.testing.assert_allclose(_returns(rewards, masks, mc_tail="bootstrap_last"), [-1.0, 0.0, -3.0, -2.0])


def test_mc_returns_use_scaled_rewards_and_restart_at_every_stored_trajectory() -> None:
    config = make_config("calql", overrides={"discount": 0.5, "reward_scale": 2.0, "reward_bias": 1.0})
    data = {  # two trajectories of two rows: rewards −1 → −1 after the scale and bias, 0 → 1
        "rewards": np.array([-1.0, 0.0, -1.0, -1.0], np.float32),
        "masks": np.array([1.0, 0.0, 1.0, 1.0], np.float32),
        "terminals": np.array([0.0, 1.0, 0.0, 1.0], np.float32),
    }
    # First: success at row 1 (1, mask 0), row 0: −1 + 0.5·1 = −0.5. Second: constant −1 → −2 at both rows.
    np.testing.assert_allclose(dataset_column(config, calql.EPISODE_COLUMNS[0], data), [-0.5, 1.0, -2.0, -2.0])


def _constant_critic_params(config, key: int = 0) -> dict:
    """Parameters whose critic is Q ≡ 0 everywhere (zero kernels and biases)."""
    params = calql.init(config, 3, 2, jax.random.PRNGKey(key)).params
    return params | {"critic": jax.tree.map(jnp.zeros_like, params["critic"])}


@pytest.mark.parametrize("bound", [5.0, 30.0])
def test_the_bound_raises_exactly_the_policy_sampled_q_values(batch, bound: float) -> None:
    # Without importance sampling the logsumexp set holds n random, 1 data, n next-state and n current-state
    # Q-values. With Q ≡ 0, the gap is log(3n + 1) unbounded; raising only the 2n policy-sampled entries to G
    # gives log((n + 1) + 2n·e^G). Raising the random or data entries too would give another number.
    config = make_config("calql", overrides=TINY | {"cql_importance_sample": False})
    params = _constant_critic_params(config)
    q_data = jnp.zeros((2, 8))
    key = jax.random.PRNGKey(3)
    n = config.cql_n_actions
    gap = jax.jit(lambda returns: calql.cql_gap(config, params, batch | {"mc_returns": returns}, q_data, key))
    unbounded, _ = gap(jnp.full(8, -jnp.inf))
    bounded, metrics = gap(jnp.full(8, bound))
    np.testing.assert_allclose(unbounded, [math.log(3 * n + 1)] * 2, rtol=1e-6)
    np.testing.assert_allclose(bounded, [np.logaddexp(math.log(n + 1), math.log(2 * n) + bound)] * 2, rtol=1e-6)
    assert float(metrics["calql/bound_rate_current"]) == 1.0  # every policy Q (0) was below G


def test_plain_cql_ignores_the_returns(batch) -> None:
    config = make_config("calql", overrides=TINY | {"calibrated": False})
    params = calql.init(config, 3, 2, jax.random.PRNGKey(0)).params
    q_data = jnp.zeros((2, 8))
    key = jax.random.PRNGKey(3)
    gap = jax.jit(lambda returns: calql.cql_gap(config, params, batch | {"mc_returns": returns}, q_data, key))
    low, _ = gap(jnp.full(8, -100.0))
    high, _ = gap(jnp.full(8, 100.0))
    np.testing.assert_array_equal(low, high)


@pytest.mark.parametrize("lagrange", [False, True])
def test_each_loss_trains_only_its_own_parameters(batch, lagrange: bool) -> None:
    # The reference computes one gradient per loss and gives each parameter set its own loss's gradient; the
    # summed loss with stop_gradient must give every set exactly that gradient.
    config = make_config("calql", overrides=TINY | {"cql_lagrange": lagrange})
    state = calql.init(config, 3, 2, jax.random.PRNGKey(0))
    batch = batch | {"mc_returns": jnp.linspace(-2.0, 2.0, 8)}
    key = jax.random.PRNGKey(1)

    def named(params):
        return calql.losses(config, params, state.target_params, batch, key, 2)[0]

    total = jax.jit(jax.grad(lambda p: sum(named(p).values())))(state.params)
    # One compiled call: the gradient of every loss alone, each taken with respect to all parameters.
    separate = jax.jit(lambda p: {name: jax.grad(lambda q, name=name: named(q)[name])(p) for name in calql.GROUPS})
    separate = separate(state.params)
    for name in calql.GROUPS:
        alone = separate[name][name]
        for x, y in zip(jax.tree.leaves(total[name]), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
        assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(alone)) or (
            name == "log_alpha_prime" and not lagrange  # fixed α: the multiplier has no loss
        )


def test_the_policy_and_the_critic_have_their_own_learning_rates() -> None:
    config = make_config("calql", overrides=TINY | {"policy_lr": 1e-4, "qf_lr": 3e-4})
    state = calql.init(config, 3, 2, jax.random.PRNGKey(0))
    grads = jax.tree.map(jnp.ones_like, state.params)  # Adam's first step moves every parameter by its lr
    updates, _ = calql.optimizer(config).update(grads, state.opt_state, state.params)
    for name, group in calql.GROUPS.items():
        lr = config.policy_lr if group == "policy" else config.qf_lr
        for leaf in jax.tree.leaves(updates[name]):
            np.testing.assert_allclose(leaf, -lr, rtol=1e-4)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cql_n_actions", 0, "cql_n_actions must be an integer >= 1"),
        ("reward_scale", 0.0, "reward_scale must be a number > 0"),
        ("cql_weight", -1.0, "cql_weight must be a number >= 0"),
        ("cql_temp", 0.0, "cql_temp must be a number > 0"),
        ("mc_tail", "last", "mc_tail must be one of"),
        ("cql_clip_diff_max", float("inf"), "cql_clip_diff_max must be a finite number"),
    ],
)
def test_out_of_range_settings_are_refused_with_the_fields_name(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config("calql", overrides={field: value})
