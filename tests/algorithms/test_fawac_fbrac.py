"""FAWAC and FBRAC: their losses on tiny cases computed by hand in numpy, and what each loss may train.

Networks in the loss cases are linear (`hidden_dims=()`), one Dense layer whose weights the test sets or reads out.
Where a loss draws noise, the test redraws it from the documented key splits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, dense, np_batch, perturb, q_heads, set_dense

from flowsteer.algorithms import fawac, fbrac

LINEAR = {"actor_hidden_dims": (), "value_hidden_dims": ()}
SMALL = {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16)}
KEY = jax.random.PRNGKey(3)
FLOW = ("MLP_0", "Dense_0")
CRITIC = ("VmapMLP_0", "Dense_0")
VALUE = ("MLP_0", "Dense_0")


def flow_draws(key: jax.Array, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(x⁰, t) of flow matching: x⁰ from the first half of the split key, t from the second."""
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, shape)
    t = jax.random.uniform(time_key, (*shape[:-1], 1))
    return np.asarray(x0, np.float64), np.asarray(t, np.float64)


def linear_velocity(flow_params: dict, obs: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    k, b = dense(flow_params, FLOW)
    return np.concatenate([obs, x, t], axis=-1) @ k + b


def constant_flow(flow_params: dict, velocity: float) -> dict:
    """v_θ ≡ velocity: with +5, ten Euler steps take every z above 1, so every sampled action is clipped to 1."""
    k, _ = dense(flow_params, FLOW)
    return set_dense(flow_params, FLOW, np.zeros_like(k), np.full(ACT_DIM, velocity))


def grad_norms(fn, params: dict) -> dict[str, float]:
    """‖∂fn/∂params[name]‖ for every top-level network."""
    grads = jax.jit(jax.grad(fn))(params)
    return {name: float(optax.tree.norm(g)) for name, g in grads.items()}


def assert_routes(norms: dict[str, float], trained: set[str]) -> None:
    for name, norm in norms.items():
        if name in trained:
            assert norm > 0, f"{name} should be trained by this loss"
        else:
            assert norm == 0.0, f"{name} should be frozen in this loss, got |grad| = {norm}"


# ---- FAWAC losses --------------------------------------------------------------------------------------


def fawac_case(**fields):
    config = fawac.FAWACConfig(**LINEAR, **fields)
    state = fawac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = dict(state.params)
    params["actor_flow"] = constant_flow(params["actor_flow"], 5.0)
    return config, params, {"critic": perturb(params["critic"])}


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_fawac_critic_backs_up_mean_minus_rho_std_of_the_target_heads(batch, rho):
    config, params, target_params = fawac_case(rho=rho, discount=0.9)
    b = np_batch(batch)
    next_qs = q_heads(target_params["critic"], b["next_observations"], np.ones_like(b["actions"]))
    y = b["rewards"] + 0.9 * b["masks"] * (next_qs.mean(0) - rho * next_qs.std(0))
    expected = np.mean((q_heads(params["critic"], b["observations"], b["actions"]) - y) ** 2)
    _, info = fawac.total_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(info["critic/critic_loss"], expected, rtol=1e-5)


def test_fawac_with_two_heads_and_rho_one_backs_up_the_min_as_fbrac_does(batch):
    config, params, target_params = fawac_case(rho=1.0)
    _, info = fawac.total_loss(config, params, target_params, batch, KEY)
    critic_key = jax.random.split(KEY, 3)[0]
    expected, _ = fbrac.critic_loss(fbrac.FBRACConfig(**LINEAR, q_agg="min"), params, target_params, batch, critic_key)
    np.testing.assert_allclose(info["critic/critic_loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("value_target", ["dataset", "policy"])
def test_fawac_value_regresses_on_the_target_critic(batch, value_target):
    config, params, target_params = fawac_case(value_target=value_target)
    b = np_batch(batch)
    # "dataset": QAM's rule, the dataset action; "policy": AWAC's, a flow action (here always 1, see constant_flow).
    actions = b["actions"] if value_target == "dataset" else np.ones_like(b["actions"])
    k, bias = dense(params["value"], VALUE)
    v = b["observations"] @ k[:, 0] + bias[0]
    expected = np.mean((q_heads(target_params["critic"], b["observations"], actions) - v) ** 2)
    loss, _ = fawac.value_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def known_advantage_case():
    """Q_i(s, a) = 2·a₀ + bias_i with biases 1 and 3, V(s) = 2: the advantage is 2·a₀ exactly."""
    config, params, _ = fawac_case(alpha=3.0)
    critic_kernel = np.zeros((2, OBS_DIM + ACT_DIM, 1))
    critic_kernel[:, OBS_DIM, 0] = 2.0
    params["critic"] = set_dense(params["critic"], CRITIC, critic_kernel, [[1.0], [3.0]])
    params["value"] = set_dense(params["value"], VALUE, np.zeros((OBS_DIM, 1)), [2.0])
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4, OBS_DIM)), jnp.float32)
    actions = jnp.array([[-0.5, 0.1], [0.0, -0.3], [0.25, 0.7], [0.9, -0.9]])
    return config, params, obs, actions


def test_fawac_weights_are_exp_of_scaled_advantage_capped_at_100():
    config, params, obs, actions = known_advantage_case()
    # A = [-1, 0, 0.5, 1.8], λ = 3: exp(λA) = [e⁻³, 1, e^1.5, e^5.4 ≈ 221 → 100].
    expected = [np.exp(-3.0), 1.0, np.exp(1.5), 100.0]
    np.testing.assert_allclose(fawac.advantage_weights(config, params, obs, actions), expected, rtol=1e-5)


def test_fawac_actor_loss_weights_each_sample_before_the_batch_mean():
    config, params, obs, actions = known_advantage_case()
    weights = np.array([np.exp(-3.0), 1.0, np.exp(1.5), 100.0])
    # v_θ ≡ 5: the per-sample error is mean_d (5 − (a − x⁰))².
    x0, _ = flow_draws(KEY, actions.shape)
    errors = np.mean((5.0 - (np.asarray(actions, np.float64) - x0)) ** 2, axis=-1)
    batch = {"observations": obs, "actions": actions}
    loss, info = fawac.actor_loss(config, params, batch, KEY)
    np.testing.assert_allclose(loss, np.mean(weights * errors), rtol=1e-5)
    np.testing.assert_allclose(info["bc_flow_loss"], errors.mean(), rtol=1e-5)
    assert float(info["weight_clipped"]) == 0.25


# ---- FBRAC losses --------------------------------------------------------------------------------------


def fbrac_case(normalize: bool):
    config = fbrac.FBRACConfig(**LINEAR, alpha=3.0, normalize_q_loss=normalize)
    state = fbrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = dict(state.params)
    k, _ = dense(params["actor_flow"], FLOW)
    # A velocity that depends on s, x and t, large enough that some actions leave the box and are clipped.
    rng = np.random.default_rng(1)
    params["actor_flow"] = set_dense(params["actor_flow"], FLOW, rng.normal(size=k.shape), [0.4, -0.6])
    return config, params


@pytest.mark.parametrize("normalize", [False, True])
def test_fbrac_actor_loss_is_alpha_flow_loss_minus_q_of_the_euler_actions(batch, normalize):
    config, params = fbrac_case(normalize)
    b = np_batch(batch)
    obs, actions = b["observations"], b["actions"]
    flow_key, noise_key = jax.random.split(KEY)
    x0, t = flow_draws(flow_key, actions.shape)
    x_t = (1 - t) * x0 + t * actions
    flow_loss = np.mean((linear_velocity(params["actor_flow"], obs, x_t, t) - (actions - x0)) ** 2)
    x = np.asarray(jax.random.normal(noise_key, actions.shape), np.float64)
    for i in range(10):
        x = x + linear_velocity(params["actor_flow"], obs, x, np.full((len(x), 1), i / 10)) / 10
    assert np.abs(x).max() > 1  # some actions leave the box, so the clip before Q matters
    q = q_heads(params["critic"], obs, np.clip(x, -1, 1)).mean(0)
    q_loss = -q.mean() / (np.abs(q).mean() if normalize else 1.0)
    loss, info = fbrac.actor_loss(config, params, batch, KEY)
    np.testing.assert_allclose(info["bc_flow_loss"], flow_loss, rtol=1e-5)
    np.testing.assert_allclose(info["q_loss"], q_loss, rtol=1e-5)
    np.testing.assert_allclose(loss, 3.0 * flow_loss + q_loss, rtol=1e-5)


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_fbrac_critic_backs_up_the_flow_action_with_mean_or_min(batch, q_agg):
    config = fbrac.FBRACConfig(**LINEAR, q_agg=q_agg, discount=0.9)
    state = fbrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params = {**state.params, "actor_flow": constant_flow(state.params["actor_flow"], 5.0)}
    target_params = {"critic": perturb(params["critic"])}
    b = np_batch(batch)
    next_qs = q_heads(target_params["critic"], b["next_observations"], np.ones_like(b["actions"]))
    next_q = next_qs.min(0) if q_agg == "min" else next_qs.mean(0)
    y = b["rewards"] + 0.9 * b["masks"] * next_q
    expected = np.mean((q_heads(params["critic"], b["observations"], b["actions"]) - y) ** 2)
    loss, _ = fbrac.critic_loss(config, params, target_params, batch, KEY)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


# ---- gradient routing ----------------------------------------------------------------------------------


@pytest.mark.integration  # over ~10 s on 2 cores (three gradients, each through a critic, V and a flow chain)
def test_fawac_each_loss_reaches_only_its_network(batch):
    config = fawac.FAWACConfig(**SMALL, flow_steps=3)
    state = fawac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    targets = {"critic": perturb(state.params["critic"])}
    critic_loss = lambda p: fawac.critic_loss(config, p, targets, batch, KEY)[0]  # noqa: E731
    assert_routes(grad_norms(critic_loss, state.params), {"critic"})
    value_loss = lambda p: fawac.value_loss(config, p, targets, batch, KEY)[0]  # noqa: E731
    assert_routes(grad_norms(value_loss, state.params), {"value"})
    # The advantage weights carry no gradient: the actor loss trains the flow only.
    actor_loss = lambda p: fawac.actor_loss(config, p, batch, KEY)[0]  # noqa: E731
    assert_routes(grad_norms(actor_loss, state.params), {"actor_flow"})


def test_fawac_value_target_from_the_flow_trains_only_the_value(batch):
    config = fawac.FAWACConfig(**SMALL, flow_steps=3, value_target="policy")
    state = fawac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    targets = {"critic": perturb(state.params["critic"])}
    norms = grad_norms(lambda p: fawac.value_loss(config, p, targets, batch, KEY)[0], state.params)
    assert_routes(norms, {"value"})


def test_fawac_weights_carry_no_gradient(batch):
    config = fawac.FAWACConfig(**SMALL)
    state = fawac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    weights = lambda p: fawac.advantage_weights(config, p, batch["observations"], batch["actions"]).sum()  # noqa: E731
    assert_routes(grad_norms(weights, state.params), set())


def test_fbrac_each_loss_reaches_only_its_network(batch):
    config = fbrac.FBRACConfig(**SMALL, flow_steps=3, normalize_q_loss=True)
    state = fbrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    targets = {"critic": perturb(state.params["critic"])}
    critic_loss = lambda p: fbrac.critic_loss(config, p, targets, batch, KEY)[0]  # noqa: E731
    assert_routes(grad_norms(critic_loss, state.params), {"critic"})

    def actor_metric(name):
        return lambda p: fbrac.actor_loss(config, p, batch, KEY)[1][name]

    assert_routes(grad_norms(actor_metric("bc_flow_loss"), state.params), {"actor_flow"})
    # The critic is frozen in the actor loss: Q moves the flow only.
    assert_routes(grad_norms(actor_metric("q_loss"), state.params), {"actor_flow"})


@pytest.mark.integration  # over ~10 s on 2 cores (eleven 10-step BPTT gradients)
def test_fbrac_q_gradient_reaches_the_flow_through_every_euler_step(batch):
    """FBRAC's Q-loss gradient equals full backpropagation through the 10 Euler steps, and differs from it when
    any single step k is cut from the chain: every step contributes."""
    config = fbrac.FBRACConfig(**SMALL)
    state = fbrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    critic, flow = fbrac._networks(config, ACT_DIM)
    obs = batch["observations"]
    noise = jax.random.normal(jax.random.split(KEY)[1], batch["actions"].shape)  # the actor loss's z

    def q_loss_through(flow_params, through: jax.Array):
        """The Q loss with step i's velocity kept in the gradient where through[i] = 1, cut where it is 0."""
        x = noise
        for i in range(10):
            v = flow.apply(flow_params, obs, x, jnp.full((len(x), 1), i / 10))
            x = x + (through[i] * v + (1 - through[i]) * jax.lax.stop_gradient(v)) / 10
        return -critic.apply(state.params["critic"], obs, jnp.clip(x, -1, 1)).mean()

    def fbrac_q_loss(flow_params):
        return fbrac.actor_loss(config, {**state.params, "actor_flow": flow_params}, batch, KEY)[1]["q_loss"]

    def flat(tree):
        return np.concatenate([np.reshape(x, (x.shape[0], -1)) for x in jax.tree.leaves(tree)], axis=1)

    theta = state.params["actor_flow"]
    # Row 0 keeps every step; row k + 1 cuts step k only.
    masks = jnp.concatenate([jnp.ones((1, 10)), 1 - jnp.eye(10)])
    grads = flat(jax.jit(jax.vmap(jax.grad(q_loss_through), in_axes=(None, 0)))(theta, masks))
    grad = flat(jax.tree.map(lambda g: g[None], jax.jit(jax.grad(fbrac_q_loss))(theta)))[0]
    np.testing.assert_allclose(grad, grads[0], rtol=1e-4, atol=1e-7)
    for k in range(10):
        change = np.linalg.norm(grad - grads[k + 1]) / np.linalg.norm(grad)
        assert change > 1e-3, f"Euler step {k} contributes nothing to the Q gradient (relative change {change})"
