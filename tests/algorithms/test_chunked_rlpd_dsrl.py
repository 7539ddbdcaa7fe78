"""QC-RLPD and chunked DSRL-NA (docs/chunking.md): they learn and act on flat chunks of H·d values, bootstrap with
γ^H, leave chunks that cross an episode end out of the TD loss, and compute exactly the single-step losses at H = 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import set_dense

from flowsteer.algorithms import dsrl, dsrl_na, make_config, rlpd
from flowsteer.algorithms.chunks import step_weights
from flowsteer.algorithms.flow import flow_matching_loss
from flowsteer.algorithms.networks import Critic
from flowsteer.algorithms.training import draw_batch, sequence_batch

OBS, D, H = 3, 2, 3
TINY = {
    "rlpd": {"actor_hidden_dims": (8,), "value_hidden_dims": (8,), "batch_size": 4},
    "dsrl_na": {
        "actor_hidden_dims": (8,),
        "value_hidden_dims": (8,),
        "base_hidden_dims": (8,),
        "num_critics": 2,
        "flow_steps": 2,
        "batch_size": 4,
    },
}
LEARNERS = {"rlpd": rlpd, "dsrl_na": dsrl_na}
CROSSING = 1  # the chunk of `chunk_batch` that crosses an episode end


def two_episodes() -> dict[str, jax.Array]:
    """Twelve rows: an episode of rows 0-4 (terminal at 4), then one of rows 5-11."""
    rng = np.random.default_rng(0)
    terminals = np.zeros(12, np.float32)
    terminals[[4, 11]] = 1.0
    data = {
        "observations": rng.normal(size=(12, OBS)),
        "actions": rng.uniform(-0.9, 0.9, size=(12, D)),
        "next_observations": rng.normal(size=(12, OBS)),
        "rewards": rng.normal(size=12),
        "masks": np.ones(12),
        "terminals": terminals,
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in data.items()}


def chunk_batch() -> dict[str, jax.Array]:
    """Chunks of H = 3 rows starting at rows 0, 3, 5 and 8: the one at row 3 (rows 3-5) crosses the episode end."""
    batch = sequence_batch(two_episodes(), jnp.array([0, 3, 5, 8]), H, discount=0.99, size=12)
    assert batch["valid"].tolist() == [1.0, 0.0, 1.0, 1.0]
    return batch


def config_and_state(algo: str, horizon: int, **overrides):
    config = make_config(algo, overrides=TINY[algo] | overrides, action_chunk=horizon)
    return config, LEARNERS[algo].init(config, OBS, horizon * D, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def chunked() -> dict:
    """(config, state) of each learner at H = 3, initialised once for the module."""
    return {algo: config_and_state(algo, H) for algo in LEARNERS}


def critic_grads(algo: str, config, state, batch) -> list[np.ndarray]:
    key = jax.random.PRNGKey(3)
    grads = jax.grad(
        lambda p: LEARNERS[algo].critic_loss(config, p, state.target_params, batch, key)[0]
    )(state.params)  # fmt: skip
    return [np.asarray(x) for x in jax.tree.leaves(grads["critic"])]


@pytest.mark.parametrize("algo", ["rlpd", "dsrl_na"])
def test_a_chunked_learner_updates_on_chunks_and_acts_with_h_times_d_values(chunked: dict, algo: str) -> None:
    config, state = chunked[algo]
    assert state.act_dim == H * D
    batch = chunk_batch()
    if algo == "dsrl_na":  # the base's flow-BC pretraining runs on chunks too
        state, metrics = jax.jit(lambda s, b: dsrl_na.pretrain_update(config, s, b))(state, batch)
        assert np.isfinite(float(metrics["base/bc_flow_loss"]))
    state, metrics = jax.jit(lambda s, b: LEARNERS[algo].update(config, s, b))(state, batch)
    assert int(state.step) >= 1 and all(np.isfinite(float(v)) for v in metrics.values())
    actions = LEARNERS[algo].act(config, state, batch["observations"], jax.random.PRNGKey(1))
    assert actions.shape == (4, H * D)


@pytest.mark.parametrize("algo", ["rlpd", "dsrl_na"])
def test_a_chunk_that_crosses_an_episode_end_adds_nothing_to_the_td_gradient(chunked: dict, algo: str) -> None:
    config, state = chunked[algo]
    batch = chunk_batch()
    changed = {
        "rewards": batch["rewards"].at[CROSSING].add(100.0),
        "actions": batch["actions"].at[CROSSING].set(0.5),
        "next_observations": batch["next_observations"].at[CROSSING].add(3.0),
    }
    before = critic_grads(algo, config, state, batch)
    after = critic_grads(algo, config, state, batch | changed)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    control = critic_grads(algo, config, state, batch | {"rewards": batch["rewards"].at[0].add(100.0)})
    assert not all(np.array_equal(a, b) for a, b in zip(before, control, strict=True))


def test_the_chunk_td_target_bootstraps_with_the_discount_to_the_power_h(chunked: dict) -> None:
    # A critic whose output layer has zero weights and bias b gives Q = Q̄ = b everywhere, so y = r + γ^H·b and the
    # loss is the valid-weighted mean of (b − r − γ^H·b)² over the whole batch (the invalid chunk counts 0).
    config, state = chunked["rlpd"]
    b = 2.0
    critic = set_dense(state.params["critic"], ("VmapMLP_0", "Dense_1"), kernel=np.zeros((2, 8, 1)),
                       bias=np.full((2, 1), b))  # fmt: skip
    params = {**state.params, "critic": critic}
    batch = chunk_batch()
    loss, _ = rlpd.critic_loss(config, params, {"critic": critic}, batch, jax.random.PRNGKey(0))
    r, valid = np.asarray(batch["rewards"], np.float64), np.asarray(batch["valid"], np.float64)
    expected = np.mean(valid * (b - r - 0.99**H * b) ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("algo", ["rlpd", "dsrl_na"])
def test_at_h1_the_batch_has_no_valid_key_and_the_td_loss_is_the_single_step_one(algo: str) -> None:
    config, state = config_and_state(algo, 1)
    batch = draw_batch(config, two_episodes(), jax.random.PRNGKey(2))
    assert "valid" not in batch and batch["actions"].shape == (4, D)
    key = jax.random.PRNGKey(3)
    loss, _ = LEARNERS[algo].critic_loss(config, state.params, state.target_params, batch, key)

    # The single-step loss as it was written before chunks: mean((Q − (r + γ·mask·V(s′)))²).
    frozen = jax.lax.stop_gradient(state.params)
    next_obs = batch["next_observations"]
    if algo == "rlpd":
        critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
        next_actions, _ = rlpd.sample_actions(config, frozen["actor"], next_obs, key, D)
        next_value = critic.apply(state.target_params["critic"], next_obs, next_actions).mean(axis=0)
    else:
        critic = dsrl.critic_net(config)
        noise, log_prob = dsrl.sample_noise(config, frozen, next_obs, key, D)
        next_actions = dsrl.decode_noise(config, frozen, state.target_params, next_obs, noise)
        next_qs = critic.apply(state.target_params["critic"], next_obs, next_actions)
        next_value = dsrl.soft_value(config, frozen, next_qs, log_prob)
    target = batch["rewards"] + config.discount * batch["masks"] * next_value
    qs = critic.apply(state.params["critic"], batch["observations"], batch["actions"])
    assert np.array_equal(np.asarray(loss), np.asarray(jnp.mean((qs - target) ** 2)))


def test_rlpd_without_bc_alpha_has_no_bc_term() -> None:
    config, state = config_and_state("rlpd", 1)
    batch = draw_batch(config, two_episodes(), jax.random.PRNGKey(2))
    _, info = rlpd.actor_loss(config, state.params, batch, jax.random.PRNGKey(4))
    assert "actor/bc_loss" not in info
    assert list(info) == ["actor/actor_loss", "actor/q", "actor/entropy"]


def _fixed_gaussian_actor(config, state, mean: list[float], log_std: list[float]) -> dict:
    """The actor's mean and log-std heads with zero kernels: μ(s) = `mean`, log σ(s) = `log_std` for every s."""
    hidden = config.actor_hidden_dims[-1]
    actor = state.params["actor"]
    actor = set_dense(actor, ("Dense_0",), kernel=np.zeros((hidden, len(mean))), bias=mean)
    return set_dense(actor, ("Dense_1",), kernel=np.zeros((hidden, len(mean))), bias=log_std)


def test_the_bc_term_is_minus_the_log_density_of_the_clipped_batch_chunk() -> None:
    # H = 2, d = 1; the second chunk's 1.0 is clipped to 1 − 1e−5 so that atanh stays finite.
    config = make_config("rlpd", overrides=TINY["rlpd"] | {"bc_alpha": 0.01}, action_chunk=2)
    state = rlpd.init(config, OBS, 2, jax.random.PRNGKey(0))
    mu, log_std = np.array([0.1, -0.2]), np.array([0.0, np.log(0.5)])
    actor = _fixed_gaussian_actor(config, state, mu.tolist(), log_std.tolist())
    actions = np.array([[0.5, -0.25], [1.0, 0.0]])
    batch = {"observations": jnp.zeros((2, OBS)), "actions": jnp.asarray(actions, jnp.float32)}

    clipped = np.clip(actions, -np.float32(1 - 1e-5), np.float32(1 - 1e-5))
    u = np.arctanh(clipped)
    log_density = -0.5 * ((u - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - clipped**2)
    expected = np.mean(-log_density.sum(axis=-1))
    assert float(rlpd.bc_loss(config, actor, batch)) == pytest.approx(expected, rel=1e-4)

    params = {**state.params, "actor": actor}
    key = jax.random.PRNGKey(5)
    with_bc, info = rlpd.actor_loss(config, params, batch, key)
    without_bc, _ = rlpd.actor_loss(make_config("rlpd", overrides=TINY["rlpd"], action_chunk=2), params, batch, key)
    assert float(info["actor/bc_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(with_bc - without_bc) == pytest.approx(0.01 * expected, rel=1e-3)


def test_bc_valid_only_leaves_chunks_that_cross_an_episode_end_out_of_the_bc_term(chunked: dict) -> None:
    batch = chunk_batch()
    moved = batch | {"actions": batch["actions"].at[CROSSING].set(0.8)}
    actor = chunked["rlpd"][1].params["actor"]
    qam = make_config("rlpd", overrides=TINY["rlpd"] | {"bc_alpha": 0.01, "bc_valid_only": True}, action_chunk=H)
    assert float(rlpd.bc_loss(qam, actor, batch)) == float(rlpd.bc_loss(qam, actor, moved))
    qc = make_config("rlpd", overrides=TINY["rlpd"] | {"bc_alpha": 0.01}, action_chunk=H)  # keeps every chunk
    assert float(rlpd.bc_loss(qc, actor, batch)) != float(rlpd.bc_loss(qc, actor, moved))


def test_the_rlpd_target_entropy_over_chunks_is_minus_half_of_h_times_d(chunked: dict) -> None:
    config, state = chunked["rlpd"]
    assert state.act_dim == H * D and rlpd.target_entropy(config, state.act_dim) == -0.5 * H * D


def test_the_chunk_flow_loss_leaves_out_the_positions_after_an_episode_end() -> None:
    batch = chunk_batch()
    # Chunk 1 covers rows 3, 4, 5; the episode ends at row 4, so position 2 (row 5) is another episode's action.
    assert batch["valid_steps"][CROSSING].tolist() == [1.0, 1.0, 0.0]

    def velocity(x, t):  # one value per action value, so each position's error depends on that position only
        return 0.5 * x * t

    def loss(actions: jax.Array) -> float:
        chunks = batch | {"actions": actions}
        return float(flow_matching_loss(velocity, actions, jax.random.PRNGKey(6), step_weights(chunks)))

    assert loss(batch["actions"].at[CROSSING, 2 * D :].set(0.7)) == loss(batch["actions"])
    assert loss(batch["actions"].at[CROSSING, :D].set(0.7)) != loss(batch["actions"])


def test_the_chunk_flow_loss_of_whole_chunks_is_the_plain_flow_loss() -> None:
    chunks = jax.random.uniform(jax.random.PRNGKey(0), (4, H * D), minval=-1, maxval=1)

    def velocity(x, t):
        return x * t

    key = jax.random.PRNGKey(1)
    whole = step_weights({"actions": chunks, "valid_steps": jnp.ones((4, H))})
    masked = flow_matching_loss(velocity, chunks, key, whole)
    assert float(masked) == pytest.approx(float(flow_matching_loss(velocity, chunks, key)), rel=1e-6)


def test_the_dsrl_base_learns_only_from_valid_chunk_positions(chunked: dict) -> None:
    config, state = chunked["dsrl_na"]
    batch = chunk_batch()
    nothing_valid = batch | {"valid_steps": jnp.zeros_like(batch["valid_steps"])}
    _, _, metrics = dsrl.base_step(config, state.params, state.opt_state, nothing_valid, jax.random.PRNGKey(6))
    assert float(metrics["base/bc_flow_loss"]) == 0.0


def test_dsrl_sac_refuses_chunks_and_names_the_learners_that_chunk() -> None:
    with pytest.raises(ValueError, match=r"dsrl_sac cannot act in chunks \(action_chunk 3\)") as refused:
        make_config("dsrl_sac", action_chunk=3)
    assert "rlpd" in str(refused.value) and "dsrl_na" in str(refused.value)


def test_a_negative_bc_alpha_is_refused() -> None:
    with pytest.raises(ValueError, match="bc_alpha must be a number >= 0"):
        make_config("rlpd", overrides={"bc_alpha": -0.1})
