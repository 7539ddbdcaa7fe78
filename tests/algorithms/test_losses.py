"""Loss values on tiny cases computed by hand in numpy.

Networks are linear (`hidden_dims=()`), so every network is one Dense layer whose weights the test reads out
and evaluates itself; where a loss draws noise, the test sets the weights that the noise would meet to zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, dense, np_batch, perturb, q_heads, set_dense

from flowsteer.algorithms import bc, diffusion, fql, idql, ifql, iql, rebrac
from flowsteer.algorithms.flow import euler_sample, flow_matching_loss
from flowsteer.algorithms.networks import Critic

LINEAR = {"actor_hidden_dims": (), "value_hidden_dims": ()}
KEY = jax.random.PRNGKey(3)


def v_value(value_params: dict, obs: np.ndarray) -> np.ndarray:
    k, b = dense(value_params, ("MLP_0", "Dense_0"))
    return obs @ k[:, 0] + b[0]


def expectile_np(diff: np.ndarray, kappa: float) -> np.ndarray:
    return np.where(diff >= 0, kappa, 1 - kappa) * diff**2


# ---- shared pieces -------------------------------------------------------------------------------------


def test_euler_uses_left_endpoints_and_clips():
    noise = jnp.array([[0.0, 0.9, -3.0]])
    # v = t: Σ_{i<10} (i/10)/10 = 0.45, not the exact integral 0.5.
    out = euler_sample(lambda x, t: jnp.broadcast_to(t, x.shape), noise, 10)
    np.testing.assert_allclose(out, [[0.45, 1.0, -1.0]], atol=1e-6)
    # v = x: x₁ = z·(1 + 1/M)^M.
    out = euler_sample(lambda x, t: x, jnp.array([[0.1, -0.2]]), 10)
    np.testing.assert_allclose(out, [[0.1 * 1.1**10, -0.2 * 1.1**10]], rtol=1e-5)


def test_flow_matching_loss_regresses_the_straight_path_velocity():
    actions = jnp.array([[0.5, -0.25], [0.1, 0.9], [-0.7, 0.3]])
    key = jax.random.PRNGKey(0)
    # The documented draws: x⁰ from the first half of the split key, t from the second.
    noise_key, time_key = jax.random.split(key)
    x0 = np.asarray(jax.random.normal(noise_key, actions.shape), np.float64)
    t = np.asarray(jax.random.uniform(time_key, (3, 1)), np.float64)
    a = np.asarray(actions, np.float64)
    x_t = (1 - t) * x0 + t * a
    expected = np.mean((2 * x_t + t - (a - x0)) ** 2)
    loss = flow_matching_loss(lambda x, tt: 2 * x + tt, actions, key)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # The exact conditional velocity (a − x_t)/(1 − t) of a single data point has zero loss.
    single = jnp.array([[0.3, -0.6]])
    exact = flow_matching_loss(lambda x, tt: (single - x) / (1 - tt), single, key)
    assert float(exact) < 1e-8


def test_vp_schedule_total_noise():
    # Σ_t −log α_t = β_min + (β_max − β_min)/2 = 5.05, so ᾱ_T = exp(−5.05).
    _, alphas, alpha_hats = diffusion.schedule(5)
    np.testing.assert_allclose(alpha_hats[-1], np.exp(-5.05), rtol=1e-5)
    np.testing.assert_allclose(np.prod(alphas), alpha_hats[-1], rtol=1e-6)


def test_ddpm_loss_and_sampler_with_the_oracle_noise_predictor():
    # For data concentrated at a₀, ε*(x_t, t) = (x_t − √ᾱ_t a₀)/√(1 − ᾱ_t) is exact: zero loss, and the last
    # reverse step lands exactly on a₀.
    a0 = jnp.array([0.4, -0.7])
    _, _, alpha_hats = diffusion.schedule(5)

    def oracle(x, t):
        ah = jnp.asarray(alpha_hats)[t[..., 0].astype(jnp.int32)][..., None]
        return (x - jnp.sqrt(ah) * a0) / jnp.sqrt(1 - ah)

    actions = jnp.broadcast_to(a0, (16, 2))
    assert float(diffusion.ddpm_loss(oracle, actions, jax.random.PRNGKey(0), 5)) < 1e-8
    samples = diffusion.ddpm_sample(oracle, jax.random.PRNGKey(1), (16, 2), 5)
    np.testing.assert_allclose(samples, actions, atol=1e-5)


# ---- FQL -----------------------------------------------------------------------------------------------


def fql_case(q_agg: str, normalize: bool = False):
    config = fql.FQLConfig(**LINEAR, q_agg=q_agg, alpha=3.0, discount=0.9, normalize_q_loss=normalize)
    state = fql.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = dict(state.params)
    # One-step policy μ_ω(s, z) = W_s s + b: zero the rows that z meets, so it is deterministic.
    k, _b = dense(params["onestep_policy"], ("MLP_0", "Dense_0"))
    k = k.copy()
    k[OBS_DIM:] = 0.0
    params["onestep_policy"] = set_dense(params["onestep_policy"], ("MLP_0", "Dense_0"), kernel=k * 3)
    # BC flow with velocity +5 everywhere: after 10 Euler steps every z ends above 1, so the target is 1.
    kf, _ = dense(params["bc_flow"], ("MLP_0", "Dense_0"))
    params["bc_flow"] = set_dense(params["bc_flow"], ("MLP_0", "Dense_0"), np.zeros_like(kf), np.full(ACT_DIM, 5.0))
    target_params = {"critic": perturb(params["critic"])}
    return config, params, target_params


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_fql_critic_loss(batch, q_agg):
    config, params, target_params = fql_case(q_agg)
    b = np_batch(batch)
    k, bias = dense(params["onestep_policy"], ("MLP_0", "Dense_0"))
    next_a = np.clip(b["next_observations"] @ k[:OBS_DIM] + bias, -1, 1)
    next_qs = q_heads(target_params["critic"], b["next_observations"], next_a)
    next_q = next_qs.min(0) if q_agg == "min" else next_qs.mean(0)
    y = b["rewards"] + 0.9 * b["masks"] * next_q
    expected = np.mean((q_heads(params["critic"], b["observations"], b["actions"]) - y) ** 2)
    loss, _ = fql.critic_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_fql_actor_loss(batch, normalize):
    config, params, _ = fql_case("mean", normalize)
    b = np_batch(batch)
    k, bias = dense(params["onestep_policy"], ("MLP_0", "Dense_0"))
    mu = b["observations"] @ k[:OBS_DIM] + bias
    assert np.abs(mu).max() > 1  # some actions leave the box, so the clip before Q matters
    q = q_heads(params["critic"], b["observations"], np.clip(mu, -1, 1)).mean(0)
    q_loss = -q.mean() / (np.abs(q).mean() if normalize else 1.0)
    distill = np.mean((mu - 1.0) ** 2)
    loss, info = fql.actor_loss(config, params, batch, KEY)
    np.testing.assert_allclose(info["distill_loss"], distill, rtol=1e-5)
    np.testing.assert_allclose(info["q_loss"], q_loss, rtol=1e-5)
    np.testing.assert_allclose(loss, info["bc_flow_loss"] + 3.0 * distill + q_loss, rtol=1e-5)


# ---- BC ------------------------------------------------------------------------------------------------


def test_bc_loss_is_unit_gaussian_nll(batch):
    config = bc.BCConfig(actor_hidden_dims=())
    state = bc.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = {"actor": set_dense(state.params["actor"], ("Dense_0",), np.full((OBS_DIM, ACT_DIM), 0.2), [0.1, -0.1])}
    b = np_batch(batch)
    mean = b["observations"] @ np.full((OBS_DIM, ACT_DIM), 0.2) + [0.1, -0.1]
    expected = np.mean(np.sum(0.5 * (b["actions"] - mean) ** 2 + 0.5 * np.log(2 * np.pi), axis=-1))
    loss, _ = bc.actor_loss(config, params, batch)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # Evaluation acts with the clipped mean.
    acts = bc.act(config, state.replace(params=params), batch["observations"], KEY, deterministic=True)
    np.testing.assert_allclose(acts, np.clip(mean, -1, 1), rtol=1e-5)


# ---- IQL and IFQL --------------------------------------------------------------------------------------


def iql_case(module, config):
    state = module.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    return dict(state.params), {"critic": perturb(state.params["critic"])}


def expected_iql_value_and_critic(params, target_params, b, kappa, gamma):
    q_target = q_heads(target_params["critic"], b["observations"], b["actions"]).min(0)
    v = v_value(params["value"], b["observations"])
    value_loss = np.mean(expectile_np(q_target - v, kappa))
    y = b["rewards"] + gamma * b["masks"] * v_value(params["value"], b["next_observations"])
    qs = q_heads(params["critic"], b["observations"], b["actions"])
    critic_loss = np.mean((qs[0] - y) ** 2 + (qs[1] - y) ** 2)
    return value_loss, critic_loss


def test_iql_losses(batch):
    config = iql.IQLConfig(**LINEAR, expectile=0.8, alpha=2.0, discount=0.9)
    params, target_params = iql_case(iql, config)
    b = np_batch(batch)
    value_loss, critic_loss = expected_iql_value_and_critic(params, target_params, b, 0.8, 0.9)
    k, bias = dense(params["actor"], ("Dense_0",))
    mean = b["observations"] @ k + bias
    log_prob = np.sum(-0.5 * (b["actions"] - mean) ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)
    adv = q_heads(params["critic"], b["observations"], b["actions"]).min(0) - v_value(
        params["value"], b["observations"]
    )
    actor_loss = -np.mean(np.minimum(np.exp(2.0 * adv), 100.0) * log_prob)
    total, info = iql.total_loss(config, params, target_params, batch)
    np.testing.assert_allclose(info["value/value_loss"], value_loss, rtol=1e-5)
    np.testing.assert_allclose(info["critic/critic_loss"], critic_loss, rtol=1e-5)
    np.testing.assert_allclose(info["actor/actor_loss"], actor_loss, rtol=1e-5)
    np.testing.assert_allclose(total, value_loss + critic_loss + actor_loss, rtol=1e-5)


def test_iql_awr_weights_are_capped_at_100(batch):
    config = iql.IQLConfig(**LINEAR, alpha=1000.0)
    params, _target_params = iql_case(iql, config)
    _, qb = dense(params["critic"], ("VmapMLP_0", "Dense_0"))
    params["critic"] = set_dense(params["critic"], ("VmapMLP_0", "Dense_0"), bias=qb + 20.0)  # adv ≫ 0
    b = np_batch(batch)
    k, bias = dense(params["actor"], ("Dense_0",))
    log_prob = np.sum(-0.5 * (b["actions"] - (b["observations"] @ k + bias)) ** 2 - 0.5 * np.log(2 * np.pi), -1)
    loss, _ = iql.actor_loss(config, params, batch)
    np.testing.assert_allclose(loss, -100.0 * log_prob.mean(), rtol=1e-5)


@pytest.mark.parametrize("const_std", [True, False])
def test_iql_ddpgbc_feeds_q_the_mean_or_with_a_learned_std_a_policy_sample(batch, const_std):
    """As seohongpark/fql agents/iql.py: Q reads clip(mean) with the unit std, a reparameterised sample
    clip(mean + σ·ε), ε = normal(key), with a learned one."""
    config = iql.IQLConfig(**LINEAR, actor_loss="ddpgbc", alpha=0.5, const_std=const_std)
    params, _ = iql_case(iql, config)
    log_std = 0.0 if const_std else -1.0
    if not const_std:
        params["actor"] = {"params": {**params["actor"]["params"], "log_stds": jnp.full(ACT_DIM, log_std)}}
    b = np_batch(batch)
    k, bias = dense(params["actor"], ("Dense_0",))
    mean = b["observations"] @ k + bias
    eps = np.asarray(jax.random.normal(KEY, mean.shape), np.float64)
    q_actions = np.clip(mean if const_std else mean + np.exp(log_std) * eps, -1.0, 1.0)
    q = q_heads(params["critic"], b["observations"], q_actions).min(0)
    log_prob = np.sum(-0.5 * ((b["actions"] - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    expected = -q.mean() / np.abs(q).mean() - 0.5 * log_prob.mean()
    loss, info = iql.actor_loss(config, params, batch, KEY)
    np.testing.assert_allclose(info["q_mean"], q.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_ifql_value_and_critic_losses_are_iqls(batch):
    config = ifql.IFQLConfig(**LINEAR, expectile=0.7, discount=0.95)
    params, target_params = iql_case(ifql, config)
    value_loss, critic_loss = expected_iql_value_and_critic(params, target_params, np_batch(batch), 0.7, 0.95)
    total, info = ifql.total_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(info["value/value_loss"], value_loss, rtol=1e-5)
    np.testing.assert_allclose(info["critic/critic_loss"], critic_loss, rtol=1e-5)
    np.testing.assert_allclose(total, value_loss + critic_loss + info["actor/actor_loss"], rtol=1e-5)


def test_idql_critic_averages_the_heads(batch):
    config = idql.IDQLConfig(value_hidden_dims=(), value_layer_norm=False)  # V shaped as IFQL's
    critic, value, _ = idql.networks(config, ACT_DIM)
    assert isinstance(critic, Critic)
    params, _target_params = iql_case(ifql, ifql.IFQLConfig(**LINEAR))  # same linear V and Q shapes
    summed, _ = iql.critic_loss(critic, value, params, batch, 0.99, sum_heads=True)
    averaged, _ = iql.critic_loss(critic, value, params, batch, 0.99, sum_heads=False)
    np.testing.assert_allclose(summed, 2 * averaged, rtol=1e-6)


def test_ifql_picks_the_candidate_with_the_highest_min_q():
    config = ifql.IFQLConfig(**LINEAR)
    critic, _, _ = ifql._networks(config, 1)
    obs = jnp.zeros((2, 1))
    cands = jnp.array([[[-0.5], [0.7], [0.2]], [[0.9], [-0.8], [0.1]]])
    # Q₁ = a, Q₂ = 2a: min is increasing in a, so the largest action wins in each row.
    params = {
        "params": {
            "VmapMLP_0": {"Dense_0": {"kernel": jnp.array([[[0.0], [1.0]], [[0.0], [2.0]]]), "bias": jnp.zeros((2, 1))}}
        }
    }
    np.testing.assert_allclose(ifql.best_of_n(critic, params, obs, cands), [[0.7], [0.9]])


# ---- ReBRAC --------------------------------------------------------------------------------------------


def rebrac_case():
    config = rebrac.ReBRACConfig(**LINEAR, alpha_actor=0.3, alpha_critic=0.2, actor_noise=0.0, discount=0.9)
    state = rebrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = {
        "critic": state.params["critic"],
        "actor": set_dense(state.params["actor"], ("Dense_0",), np.full((OBS_DIM, ACT_DIM), 0.8), [0.2, -0.3]),
    }
    return config, params, perturb(params)


def test_rebrac_critic_loss(batch):
    config, params, target_params = rebrac_case()
    b = np_batch(batch)
    k, bias = dense(target_params["actor"], ("Dense_0",))
    next_a = np.clip(np.tanh(b["next_observations"] @ k + bias), -1, 1)  # actor_noise = 0
    next_q = q_heads(target_params["critic"], b["next_observations"], next_a).min(0)
    next_q -= 0.2 * np.sum((next_a - b["next_actions"]) ** 2, axis=-1)
    y = b["rewards"] + 0.9 * b["masks"] * next_q
    expected = np.mean((q_heads(params["critic"], b["observations"], b["actions"]) - y) ** 2)
    loss, _ = rebrac.critic_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_rebrac_actor_loss(batch):
    config, params, _ = rebrac_case()
    b = np_batch(batch)
    a = np.tanh(b["observations"] @ np.full((OBS_DIM, ACT_DIM), 0.8) + [0.2, -0.3])
    q = q_heads(params["critic"], b["observations"], a).min(0)
    expected = -np.mean(q) / np.mean(np.abs(q)) + 0.3 * np.mean(np.sum((a - b["actions"]) ** 2, axis=-1))
    loss, _ = rebrac.actor_loss(config, params, batch)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
