"""Networks shared by every learner: MLP, critic ensembles, vector fields, Gaussian actors, DDPM noise nets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def default_init(scale: float = 1.0) -> nn.initializers.Initializer:
    """Xavier-uniform scaled by `scale`: the kernel init of the FQL codebase (seohongpark/fql
    utils/networks.py)."""
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def mish(x: jax.Array) -> jax.Array:
    """Mish activation, x·tanh(softplus(x)): the older IDQL learner's (jaxrl5 agents/ddpm_iql)."""
    return x * jnp.tanh(jax.nn.softplus(x))


# swish (x·sigmoid(x)) is IDQL's noise-network activation in the learner its launcher runs (docs/algorithms.md#idql).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": nn.gelu,
    "relu": nn.relu,
    "mish": mish,
    "swish": nn.swish,
}


class MLP(nn.Module):
    """Dense → activation → (LayerNorm) on every hidden layer; the output layer is linear unless activate_final.
    `input_layer_norm` normalises the input first (jaxrl5's MLP `use_layer_norm`, which IDQL's V uses)."""

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False
    activation: str = "gelu"
    input_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        if self.input_layer_norm:
            x = nn.LayerNorm(name="InputLayerNorm")(x)
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init())(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                x = act(x)
                # As seohongpark/fql utils/networks.py: LayerNorm comes after the activation, not before it.
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
        return x


class Critic(nn.Module):
    """Q(s, a) or V(s) as an ensemble of MLPs; output (E, B) for E > 1 heads, (B,) for a single head."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True
    num_ensembles: int = 2
    activation: str = "gelu"
    input_layer_norm: bool = False  # LayerNorm on the (observation, action) input, per head

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array | None = None) -> jax.Array:
        inputs = observations if actions is None else jnp.concatenate([observations, actions], axis=-1)
        mlp_cls: type[nn.Module] = MLP
        if self.num_ensembles > 1:
            # Independent parameters per head, one batched matmul per layer (the reference's `Value`).
            mlp_cls = nn.vmap(
                MLP,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=None,
                out_axes=0,
                axis_size=self.num_ensembles,
            )
        mlp = mlp_cls(
            (*self.hidden_dims, 1),
            layer_norm=self.layer_norm,
            activation=self.activation,
            input_layer_norm=self.input_layer_norm,
        )
        return mlp(inputs).squeeze(-1)


class VectorField(nn.Module):
    """v(s, x, t) for flow matching, or μ(s, z) for a one-step policy when t is None (seohongpark/fql
    `ActorVectorField`)."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array, x: jax.Array, times: jax.Array | None = None) -> jax.Array:
        # FQL paper App. B: the time is a raw scalar input, no sinusoidal embedding.
        parts = [observations, x] if times is None else [observations, x, times]
        return MLP((*self.hidden_dims, self.action_dim), layer_norm=self.layer_norm)(jnp.concatenate(parts, axis=-1))


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy head; returns (mean, log_std) before any tanh squashing."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    const_std: bool = True
    state_dependent_std: bool = False  # log-std from a Dense head on the features (SAC's actor); overrides const_std
    final_fc_init_scale: float = 1e-2
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = MLP(self.hidden_dims, activate_final=True, layer_norm=self.layer_norm)(observations)
        mean = nn.Dense(self.action_dim, kernel_init=default_init(self.final_fc_init_scale))(features)
        if self.state_dependent_std:
            log_std = nn.Dense(self.action_dim, kernel_init=default_init(self.final_fc_init_scale))(features)
        elif self.const_std:
            log_std = jnp.zeros_like(mean)
        else:
            log_std = jnp.broadcast_to(self.param("log_stds", nn.initializers.zeros, (self.action_dim,)), mean.shape)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """log N(x; mean, diag(exp(log_std)²)), summed over the last axis; `weights` (shaped as `x`) multiply each
    dimension's term first (a chunk's actions after an episode end weigh 0, `chunks.step_weights`)."""
    z = (x - mean) * jnp.exp(-log_std)
    terms = -0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    if weights is not None:
        terms = terms * weights
    return jnp.sum(terms, axis=-1)


def tanh_gaussian_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """u = mean + std·ε with ε = normal(key); returns (tanh(u), log-density of tanh(u)), the SAC actor's sample.

    log π = log N(u) − Σ log(1 − tanh²u), with log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), which stays finite
    where tanh(u) rounds to ±1.
    """
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    log_det = _tanh_log_det(u)
    return jnp.tanh(u), gaussian_log_prob(mean, log_std, u) - jnp.sum(log_det, axis=-1)


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """log-density of given `actions` in (−1, 1) under tanh(N(mean, std²)): u = atanh(a), then as
    `tanh_gaussian_sample` (the change of variables of distrax's Tanh bijector, which the SAC references use)."""
    u = jnp.arctanh(actions)
    return gaussian_log_prob(mean, log_std, u) - jnp.sum(_tanh_log_det(u), axis=-1)


def _tanh_log_det(u: jax.Array) -> jax.Array:
    """log(1 − tanh²u) per value, as 2(log 2 − u − softplus(−2u))."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


class FourierFeatures(nn.Module):
    """Learnable Fourier time features [cos 2πtW, sin 2πtW] (IDQL; docs/algorithms.md#networks)."""

    output_size: int = 64

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        w = self.param("kernel", nn.initializers.normal(0.2), (self.output_size // 2, t.shape[-1]))
        f = 2 * jnp.pi * t @ w.T
        return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class ResidualBlock(nn.Module):
    """Pre-norm residual block: dropout → LayerNorm → Dense(4h) → act → Dense(h), plus the skip."""

    features: int
    dropout_rate: float = 0.0
    layer_norm: bool = True
    activation: str = "swish"

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        residual = x
        if self.dropout_rate > 0.0:
            x = nn.Dropout(self.dropout_rate, deterministic=not training)(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = nn.Dense(self.features * 4)(x)
        x = ACTIVATIONS[self.activation](x)
        return residual + nn.Dense(self.features)(x)


class DDPMNoiseNet(nn.Module):
    """ε(s, a_t, t) of IDQL: Fourier time features (time_dim) → cond MLP(2·time_dim, 2·time_dim) → residual MLP
    over [a_t, s, cond], one activation throughout (philippe-eecs/IDQL jaxrl5 agents/ddpm_iql_simple, which its
    launcher runs: time_dim 128, swish; docs/algorithms.md#idql)."""

    action_dim: int
    hidden_dim: int = 256
    num_blocks: int = 3
    dropout_rate: float = 0.1
    layer_norm: bool = True
    time_dim: int = 128
    activation: str = "swish"

    @nn.compact
    def __call__(
        self, observations: jax.Array, noisy_actions: jax.Array, times: jax.Array, training: bool = False
    ) -> jax.Array:
        features = FourierFeatures(self.time_dim)(times)
        cond = MLP((2 * self.time_dim, 2 * self.time_dim), activation=self.activation)(features)
        x = jnp.concatenate([noisy_actions, observations, cond], axis=-1)
        x = nn.Dense(self.hidden_dim, kernel_init=default_init())(x)
        for _ in range(self.num_blocks):
            x = ResidualBlock(self.hidden_dim, self.dropout_rate, self.layer_norm, self.activation)(x, training)
        return nn.Dense(self.action_dim, kernel_init=default_init())(ACTIVATIONS[self.activation](x))


def gaussian_actions(mean: jax.Array, log_std: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """Sample N(mean, std²) (the mean if deterministic, i.e. temperature 0), clipped to [−1, 1]."""
    if deterministic:
        return jnp.clip(mean, -1.0, 1.0)
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)
