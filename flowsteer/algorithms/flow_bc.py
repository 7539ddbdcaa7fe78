"""Flow behaviour cloning: FQL's BC flow policy alone (`actor_bc_flow`: flow matching, 10 Euler steps from
z ~ N(0, I); docs/algorithms.md#flow-bc). It is a baseline of its own and the base policy that DSRL steers: a finished
`flow_bc` run can be given to `dsrl_na` / `dsrl_sac` as `base_run`, so one pretrained policy is steered many
times."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import step_weights
from flowsteer.algorithms.flow import euler_sample, flow_matching_loss
from flowsteer.algorithms.networks import VectorField
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class FlowBCConfig:
    """Flow BC hyperparameters: FQL's BC flow and its defaults.

    Reference: seohongpark/fql agents/fql.py (`actor_bc_flow`) at 719d044. Intentional divergences: a learner of its
    own (the reference trains it only inside FQL); state only (docs/algorithms.md#flow-bc).
    """

    lr: float = 3e-4  # Adam learning rate
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # velocity field MLP
    actor_layer_norm: bool = False  # LayerNorm in the velocity field
    flow_steps: int = 10  # Euler steps from noise to action
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)


def flow_net(hidden_dims: tuple[int, ...], layer_norm: bool, act_dim: int) -> VectorField:
    """The BC flow v_θ(s, x, t) of FQL, as every flow-BC-capable learner builds it."""
    return VectorField(hidden_dims, act_dim, layer_norm=layer_norm)


def decode(net: VectorField, params: dict, observations: jax.Array, noise: jax.Array, steps: int) -> jax.Array:
    """π(s, z): Euler integration of the flow from x⁰ = z, clipped to [−1, 1]; a deterministic map z ↦ a."""
    return euler_sample(lambda x, t: net.apply(params, observations, x, t), noise, steps)


def bc_flow_loss(net: VectorField, params: dict, batch: Batch, key: jax.Array) -> jax.Array:
    """Flow matching of the dataset actions (docs/algorithms.md#flow-matching). Over chunks, each action value's
    error is multiplied by its position's `valid_steps` entry, Q-chunking's per-position mask (ColinQiyangLi/qc
    agents/acfql.py, actor_loss)."""
    obs = batch["observations"]
    return flow_matching_loss(lambda x, t: net.apply(params, obs, x, t), batch["actions"], key, step_weights(batch))


def _net(config: FlowBCConfig, act_dim: int) -> VectorField:
    return flow_net(config.actor_hidden_dims, config.actor_layer_norm, act_dim)


def init(config: FlowBCConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise the BC flow."""
    rng, flow_key = jax.random.split(key)
    params = {
        "bc_flow": _net(config, act_dim).init(
            flow_key, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
        )
    }
    return new_state(params, {}, optax.adam(config.lr).init(params), rng, act_dim)


def update(config: FlowBCConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the flow-matching loss."""
    net = _net(config, batch["actions"].shape[-1])

    def loss_fn(params: dict, key: jax.Array) -> tuple[jax.Array, Metrics]:
        loss = bc_flow_loss(net, params["bc_flow"], batch, key)
        return loss, {"actor/bc_flow_loss": loss}

    return summed_loss_update(optax.adam(config.lr), state, loss_fn)


def act(
    config: FlowBCConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Decode z ~ N(0, I). `deterministic` is ignored, as FQL's flow policies ignore their temperature."""
    del deterministic
    noise = jax.random.normal(key, (*observations.shape[:-1], state.act_dim))
    return decode(_net(config, state.act_dim), state.params["bc_flow"], observations, noise, config.flow_steps)


def base_policy(config: FlowBCConfig, state: TrainState) -> tuple[VectorField, dict]:
    """The BC flow this learner lends to DSRL: (network, parameters)."""
    return _net(config, state.act_dim), state.params["bc_flow"]
