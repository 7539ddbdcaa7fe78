"""IDQL as the official launcher runs it (philippe-eecs/IDQL, the `ddpm_iql_simple` learner; docs/algorithms.md#idql):
every network on the full batch, AdamW weight decay on the noise network, its time features and condition MLP,
LayerNorm on V's input, and a learning-rate schedule that spans the run."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, random_transitions

from flowsteer.algorithms import idql, to_device_dataset
from flowsteer.algorithms.networks import ACTIVATIONS, DDPMNoiseNet
from flowsteer.platform.spec import RunSpec

TINY = {"actor_hidden_dim": 16, "actor_num_blocks": 1, "value_hidden_dims": (16, 16)}


def test_value_and_critic_train_on_the_full_batch():
    """The launcher's batch of 512 reaches V and Q whole (the older learner trained them on x[:256])."""
    config = idql.IDQLConfig(**TINY)
    assert config.batch_size == 512
    batch = to_device_dataset(random_transitions(512, seed=2))
    assert all(idql.critic_batch(config, batch)[k] is v for k, v in batch.items())
    older = idql.critic_batch(idql.IDQLConfig(critic_batch_size=256), batch)
    assert all(v.shape[0] == 256 for v in older.values())


def test_the_noise_network_optimizer_is_adamw_with_decay_1e_4():
    """With a zero gradient, AdamW still shrinks every weight by lr·1e-4 (optax.adamw's default decay)."""
    params = {"kernel": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "bias": jnp.ones(2)}
    tx = idql._optimizers(idql.IDQLConfig())["behavior"]
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    for update, param in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(update, -3e-4 * 1e-4 * param, rtol=1e-5, atol=1e-12)


def test_noise_network_has_128_time_features_and_a_256_wide_swish_condition_mlp():
    net = DDPMNoiseNet(ACT_DIM, hidden_dim=8, num_blocks=1)
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, OBS_DIM)), jnp.zeros((1, ACT_DIM)),
                            jnp.zeros((1, 1)))  # fmt: skip
    tree = shapes["params"]
    assert tree["FourierFeatures_0"]["kernel"].shape == (64, 1)  # [cos, sin] of 64 frequencies: 128 features
    assert tree["MLP_0"]["Dense_0"]["kernel"].shape == (128, 256)
    assert tree["MLP_0"]["Dense_1"]["kernel"].shape == (256, 256)
    assert ACTIVATIONS[net.activation] is nn.swish


def test_value_normalises_its_input_and_the_critic_does_not():
    """A LayerNorm on V's input makes V blind to an affine change of the whole observation; Q sees it."""
    critic, value, _ = idql.networks(idql.IDQLConfig(**TINY), ACT_DIM)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS_DIM))
    actions = jnp.zeros((8, ACT_DIM))
    value_params = jax.jit(value.init)(jax.random.PRNGKey(2), obs)
    critic_params = jax.jit(critic.init)(jax.random.PRNGKey(3), obs, actions)
    shifted = 3.0 * obs + 1.0
    v, v_shifted = (jax.jit(value.apply)(value_params, o) for o in (obs, shifted))
    np.testing.assert_allclose(v, v_shifted, rtol=1e-3, atol=1e-4)  # up to LayerNorm's ε
    q, q_shifted = (jax.jit(critic.apply)(critic_params, o, actions) for o in (obs, shifted))
    assert np.abs(np.asarray(q) - np.asarray(q_shifted)).max() > 1e-3


def test_the_learning_rate_decays_over_the_run_and_ends_at_zero():
    base = {"algo": "idql", "task": "cube-single-play-singletask-v0"}
    offline = RunSpec.from_dict(base | {"offline_steps": 1_000_000})
    assert offline.algo_config().actor_lr_decay_steps == 1_000_000
    o2o = RunSpec.from_dict(base | {"offline_steps": 1_000, "online_steps": 500, "utd": 2})
    assert o2o.algo_config().actor_lr_decay_steps == 2_000  # every update trains the noise network
    chosen = RunSpec.from_dict(base | {"offline_steps": 1_000, "hyperparameters": {"actor_lr_decay_steps": 50}})
    assert chosen.algo_config().actor_lr_decay_steps == 50
    schedule = idql.actor_lr_schedule(offline.algo_config())
    assert float(schedule(0)) == pytest.approx(3e-4) and float(schedule(1_000_000)) == 0.0
