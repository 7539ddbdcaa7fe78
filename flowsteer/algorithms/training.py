"""What every learner shares: the train state, Polyak averaging, one optimizer step, on-device batches,
the scanned multi-step update and training several seeds in one program."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsteer.algorithms.xla_cpu import compiler_options

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# docs/pitfalls.md pitfall 3: dataset actions are clipped to ±(1 − 1e−5) once, for train and validation sets.
ACTION_CLIP_EPS = 1e-5
TRANSITION_KEYS = ("observations", "actions", "next_observations", "rewards", "masks", "terminals")


class TrainState(flax.struct.PyTreeNode):
    """Everything a learner carries between updates; a pytree, so it can be scanned, vmapped and saved."""

    params: Any  # trained parameters, {module name: params}
    target_params: Any  # slow (Polyak/EMA) copies, {module name: params}
    opt_state: Any  # optimizer state(s) over `params`
    step: jax.Array  # number of updates done so far (int32 scalar)
    rng: jax.Array  # PRNG key for the next update
    act_dim: int = flax.struct.field(pytree_node=False, default=0)  # action dimension (static)


class Config(Protocol):
    batch_size: int


class UpdateFn(Protocol):
    def __call__(self, config: Any, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]: ...


def polyak(online: Any, target: Any, tau: float) -> Any:
    """target ← τ·online + (1 − τ)·target, leaf by leaf."""
    return jax.tree_util.tree_map(lambda p, tp: tau * p + (1 - tau) * tp, online, target)


def grad_stats(grads: Any) -> Metrics:
    """grad/{max,min,norm}; norm is the sum of per-leaf L2 norms, as the FQL codebase logs it (seohongpark/fql
    utils/flax_utils.py)."""
    leaves = jax.tree_util.tree_leaves(grads)
    return {
        "grad/max": jnp.max(jnp.stack([jnp.max(g) for g in leaves])),
        "grad/min": jnp.min(jnp.stack([jnp.min(g) for g in leaves])),
        "grad/norm": sum(jnp.linalg.norm(g) for g in leaves),
    }


def optimizer_step(
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    loss_fn: Callable[[Any], tuple[jax.Array, Metrics]],
) -> tuple[Any, Any, Metrics]:
    """One gradient step of `tx` on `loss_fn(params) -> (loss, metrics)`; returns new params, state, metrics."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {**metrics, **grad_stats(grads)}


def train_network(
    tx: optax.GradientTransformation,
    params: dict[str, Any],
    opt_state: dict[str, Any],
    name: str,
    loss_fn: Callable[[dict[str, Any]], tuple[jax.Array, Metrics]],
) -> tuple[dict[str, Any], dict[str, Any], Metrics]:
    """One step of `tx` on `loss_fn(params)` with respect to `params[name]` only, for learners that keep one
    optimizer state per network (`opt_state[name]`): every other network is a constant of this loss, so what a
    loss trains is named at its call site. Returns the new params and optimizer states (only `name` changed) and
    the loss metrics plus `grad/<name>_norm` (global L2 norm)."""
    grads, metrics = jax.grad(lambda p: loss_fn({**params, name: p}), has_aux=True)(params[name])
    updates, state = tx.update(grads, opt_state[name], params[name])
    new_params = {**params, name: optax.apply_updates(params[name], updates)}
    return new_params, {**opt_state, name: state}, {**metrics, f"grad/{name}_norm": optax.tree.norm(grads)}


def summed_loss_update(
    tx: optax.GradientTransformation,
    state: TrainState,
    loss_fn: Callable[[Any, jax.Array], tuple[jax.Array, Metrics]],
    *,
    targets: tuple[str, ...] = (),
    tau: float | None = None,
) -> tuple[TrainState, Metrics]:
    """The FQL codebase's update: one step of `tx` on `loss_fn(params, key)`, the sum of all the agent's losses,
    then Polyak (rate `tau`) of each network in `targets` toward its parameters from *before* the step (the
    reference's one-step lag; docs/algorithms.md#shared-conventions)."""
    if targets and tau is None:
        raise ValueError(f"Polyak averaging of {list(targets)} needs a rate: pass tau")
    rng, key = jax.random.split(state.rng)
    params, opt_state, metrics = optimizer_step(tx, state.params, state.opt_state, lambda p: loss_fn(p, key))
    target_params = dict(state.target_params)
    for name in targets:
        target_params[name] = polyak(state.params[name], state.target_params[name], tau)
    new = state.replace(params=params, target_params=target_params, opt_state=opt_state, step=state.step + 1)
    return new.replace(rng=rng), metrics


def new_state(params: Any, target_params: Any, opt_state: Any, rng: jax.Array, act_dim: int) -> TrainState:
    """A fresh TrainState at step 0."""
    return TrainState(params, target_params, opt_state, jnp.zeros((), jnp.int32), rng, act_dim)


def to_device_dataset(data: Mapping[str, np.ndarray], action_clip_eps: float = ACTION_CLIP_EPS) -> Batch:
    """Put a transition dataset on the default device as float32, with clipped actions and `next_actions`.

    `next_actions[i] = actions[min(i + 1, N − 1)]` is what ReBRAC's critic penalty reads; like the reference
    it is wrong at trajectory ends (docs/pitfalls.md pitfall 6).
    """
    missing = [k for k in TRANSITION_KEYS if k not in data]
    if missing:
        raise ValueError(f"dataset lacks {missing}; it needs {list(TRANSITION_KEYS)}")
    out = {k: jnp.asarray(np.asarray(data[k], dtype=np.float32)) for k in TRANSITION_KEYS}
    out["actions"] = jnp.clip(out["actions"], -1 + action_clip_eps, 1 - action_clip_eps)
    out["next_actions"] = jnp.concatenate([out["actions"][1:], out["actions"][-1:]], axis=0)
    return out


def sample_batch(dataset: Batch, key: jax.Array, batch_size: int, size: jax.Array | int | None = None) -> Batch:
    """Uniform sample with replacement from the first `size` rows (default: all), drawn on the device."""
    size = next(iter(dataset.values())).shape[0] if size is None else size
    idx = jax.random.randint(key, (batch_size,), 0, size)
    return {k: v[idx] for k, v in dataset.items()}


def sequence_batch(dataset: Batch, starts: jax.Array, horizon: int, discount: float, size: jax.Array | int) -> Batch:
    """Chunks of `horizon` consecutive rows starting at rows `starts` (B,): Q-chunking's sequence batch (Li et al.
    2025, Sec. 4; docs/chunking.md#sequence-batches), with QAM's gating at episode ends.

    Position k of a chunk is valid while no earlier position ended an episode (terminal) and row t + k exists
    (< `size`, the rows in use). Returned: `observations` o_t; `actions` a_t … a_{t+H−1} flattened time-major
    (B, H·d); `rewards` Σ_k γ^k r_{t+k} over valid positions; `masks` the minimum mask over valid positions;
    `terminals` whether a valid position ended an episode; `next_observations` the next observation of the last
    valid position (s_{t+H} when the chunk is whole); `next_actions` the chunk that follows (rows t+H … t+2H−1,
    clamped to the last row in use; like single-step `next_actions`, wrong across episode ends); `valid` (B,) 1
    where the whole chunk lies in one episode (the TD loss drops the others) and `valid_steps` (B, H) per position.
    Columns beyond the transition keys (Cal-QL's returns, DSRL-SAC's noises) are taken at the first row.
    """
    offsets = jnp.arange(horizon)
    rows = starts[:, None] + offsets  # (B, H)
    last = jnp.maximum(jnp.asarray(size) - 1, 0)
    gather = jnp.minimum(rows, last)
    terminals = dataset["terminals"][gather]
    # An episode end at position k (terminal, or no row k + 1 in use) invalidates positions k + 1 … H − 1.
    ends = jnp.maximum(terminals, (rows + 1 > last).astype(terminals.dtype))
    ended_before = jnp.concatenate([jnp.zeros_like(ends[:, :1]), jax.lax.cummax(ends, axis=1)[:, :-1]], axis=1)
    valid_steps = 1.0 - ended_before
    discounts = jnp.asarray(discount, jnp.float32) ** offsets
    rewards = jnp.sum(dataset["rewards"][gather] * discounts * valid_steps, axis=1)
    masks = jnp.min(jnp.where(valid_steps > 0, dataset["masks"][gather], 1.0), axis=1)
    last_valid = (jnp.sum(valid_steps, axis=1) - 1).astype(jnp.int32)
    last_rows = jnp.take_along_axis(gather, last_valid[:, None], axis=1)[:, 0]
    next_rows = jnp.minimum(rows + horizon, last)
    batch_size = starts.shape[0]
    chunk = {
        "observations": dataset["observations"][starts],
        "actions": dataset["actions"][gather].reshape(batch_size, -1),
        "rewards": rewards,
        "masks": masks,
        "terminals": jnp.max(terminals * valid_steps, axis=1),
        "next_observations": dataset["next_observations"][last_rows],
        "next_actions": dataset["actions"][next_rows].reshape(batch_size, -1),
        "valid": valid_steps[:, -1],
        "valid_steps": valid_steps,
    }
    return chunk | {k: v[starts] for k, v in dataset.items() if k not in chunk}


def sample_sequences(
    dataset: Batch, key: jax.Array, batch_size: int, horizon: int, discount: float, size: jax.Array | int | None = None
) -> Batch:
    """`sequence_batch` at starts drawn uniformly from rows 0 … size − H (QC and QAM draw every start with equal
    probability and mask episode ends rather than rejecting starts near them)."""
    size = next(iter(dataset.values())).shape[0] if size is None else size
    starts = jax.random.randint(key, (batch_size,), 0, jnp.maximum(jnp.asarray(size) - horizon + 1, 1))
    return sequence_batch(dataset, starts, horizon, discount, size)


def balanced_starts(
    key: jax.Array, batch_size: int, offline_rows: int, size: jax.Array | int, horizon: int = 1
) -> jax.Array:
    """Rows where the chunks of a balanced batch start: half uniformly over the dataset rows [0, offline_rows),
    half over the online rows [offline_rows, size), each range shortened by H − 1 so a chunk starts inside it; the
    FQL reference's `--balanced_sampling` (seohongpark/fql main.py), RLPD's 50/50 mix (Ball et al. 2023, Sec. 3).
    An odd batch gets its extra row from the online rows."""
    offline_key, online_key = jax.random.split(key)
    half = batch_size // 2
    online_end = jnp.maximum(jnp.asarray(size) - horizon + 1, offline_rows + 1)
    return jnp.concatenate(
        [
            jax.random.randint(offline_key, (half,), 0, max(offline_rows - horizon + 1, 1)),
            jax.random.randint(online_key, (batch_size - half,), offline_rows, online_end),
        ]
    )


def balanced_batch(dataset: Batch, key: jax.Array, batch_size: int, offline_rows: int, size: jax.Array | int) -> Batch:
    """Single-transition batch, half from the dataset rows and half from the online rows (`balanced_starts`)."""
    idx = balanced_starts(key, batch_size, offline_rows, size)
    return {k: v[idx] for k, v in dataset.items()}


def action_chunk(config: Any) -> int:
    """H, the number of actions a learner's policy emits per call (1 for learners without the field)."""
    return int(getattr(config, "action_chunk", 1))


def draw_batch(
    config: Any, dataset: Batch, key: jax.Array, size: jax.Array | int | None = None, offline_rows: int | None = None
) -> Batch:
    """One training batch for `config`: single transitions, or chunk sequences (`sequence_batch`) when the
    learner acts in chunks of H > 1; balanced between dataset and online rows when `offline_rows` is given."""
    horizon = action_chunk(config)
    if offline_rows is not None and size is None:
        raise ValueError("balanced sampling needs `size`, the number of buffer rows in use")
    if horizon == 1:  # exactly the single-step path of learners without chunks (same random numbers)
        if offline_rows is None:
            return sample_batch(dataset, key, config.batch_size, size)
        return balanced_batch(dataset, key, config.batch_size, offline_rows, size)
    discount = getattr(config, "discount", 1.0)  # BC-style learners ignore rewards
    if offline_rows is None:
        return sample_sequences(dataset, key, config.batch_size, horizon, discount, size)
    starts = balanced_starts(key, config.batch_size, offline_rows, size, horizon)
    return sequence_batch(dataset, starts, horizon, discount, size)


def train_step(
    update: UpdateFn,
    config: Config,
    state: TrainState,
    dataset: Batch,
    size: jax.Array | int | None = None,
    offline_rows: int | None = None,
) -> tuple[TrainState, Metrics]:
    """Draw one batch from the state's key, then update: the unit that the chunked update repeats. With
    `offline_rows`, the batch is balanced between the dataset rows and the online rows (`balanced_starts`)."""
    rng, batch_key = jax.random.split(state.rng)
    batch = draw_batch(config, dataset, batch_key, size, offline_rows)
    return update(config, state.replace(rng=rng), batch)


def make_update_chunk(
    update: UpdateFn, config: Config, chunk_size: int, vmap_seeds: bool = False
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A jitted `(state, dataset) -> (state, metrics)` running `chunk_size` updates in one dispatch.

    Metrics come back stacked over the chunk (leading axis `chunk_size`). With `vmap_seeds`, the state has a
    leading seed axis (see `init_seeds`), the dataset is shared, and metrics are (seeds, chunk_size).
    """

    def chunk(state: TrainState, dataset: Batch) -> tuple[TrainState, Metrics]:
        def body(carry: TrainState, _: None) -> tuple[TrainState, Metrics]:
            return train_step(update, config, carry, dataset)

        return jax.lax.scan(body, state, None, length=chunk_size)

    if vmap_seeds:
        chunk = jax.vmap(chunk, in_axes=(0, None))
    return jax.jit(chunk, compiler_options=compiler_options())


def init_seeds(
    init: Callable[..., TrainState], config: Any, obs_dim: int, act_dim: int, seeds: list[int] | np.ndarray
) -> TrainState:
    """States for several seeds, stacked along a leading axis; state i equals init(..., PRNGKey(seeds[i]))."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    return jax.vmap(lambda k: init(config, obs_dim, act_dim, k))(keys)


def write_transition(buffer: Batch, transition: Batch, index: jax.Array, active: jax.Array | None = None) -> Batch:
    """Write one transition into the replay buffer at row `index`. Like the reference's contiguous buffer,
    `next_actions` of the row before `index` becomes this transition's action (docs/pitfalls.md pitfall 6: ReBRAC
    reads index + 1, wrong at trajectory ends). With `active` False (a seed of a group that does not move on this
    step) both rows keep what they held."""
    capacity = buffer["actions"].shape[0]
    previous = (index - 1) % capacity
    values = dict(transition, next_actions=transition["actions"])
    row = {k: jnp.asarray(values[k], v.dtype) for k, v in buffer.items()}
    follows = jnp.asarray(transition["actions"], buffer["next_actions"].dtype)
    if active is not None:
        row = {k: jnp.where(active, value, buffer[k][index]) for k, value in row.items()}
        follows = jnp.where(active, follows, buffer["next_actions"][previous])
    buffer = {k: v.at[index].set(row[k]) for k, v in buffer.items()}
    buffer["next_actions"] = buffer["next_actions"].at[previous].set(follows)
    return buffer


def _online_updates(
    update: UpdateFn, config: Config, utd: int, offline_rows: int | None
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """`utd` updates on batches from the first `size` rows of the buffer (balanced if `offline_rows` is given)."""

    def train(state: TrainState, buffer: Batch, size: jax.Array) -> tuple[TrainState, Metrics]:
        def body(carry: TrainState, _: None) -> tuple[TrainState, Metrics]:
            return train_step(update, config, carry, buffer, size, offline_rows)

        return jax.lax.scan(body, state, None, length=utd)

    return train


def online_update_fn(
    update: UpdateFn, config: Config, utd: int, offline_rows: int | None = None
) -> Callable[[TrainState, Batch, Batch, int, int], tuple[TrainState, Batch, Metrics]]:
    """An online step: write one transition into the replay buffer at row `index` (`write_transition`), then run
    `utd` updates on batches from its first `size` rows (balanced between rows below and above `offline_rows` if
    given; none when called with `update=False`); metrics come back stacked over the `utd` updates.

    Two compiled calls: the write donates the buffer and happens in place; in one program XLA fuses the
    batch gathers with the write and copies the whole buffer every step.
    """
    write_jit = jax.jit(write_transition, donate_argnums=(0,))
    train_jit = jax.jit(_online_updates(update, config, utd, offline_rows), compiler_options=compiler_options())

    def step(state: TrainState, buffer: Batch, transition: Batch, index: int, size: int, update: bool = True):
        buffer = write_jit(buffer, transition, index)
        if not update:  # a warm-up step (flowsteer.algorithms.steering): the transition is stored, nothing learns
            return state, buffer, {}
        state, metrics = train_jit(state, buffer, size)
        return state, buffer, metrics

    return step


def group_online_update_fn(
    update: UpdateFn, config: Config, utd: int, offline_rows: int | None = None
) -> Callable[..., tuple[TrainState, Batch, Metrics]]:
    """`online_update_fn` for a group of seeds (leading seed axis on the state, the buffers and the transitions):
    the seeds marked in `active` write their transition at row `index`; every seed runs `utd` updates in the same
    program, and the caller keeps the new state of the seeds that moved (`select_seeds`), so each seed's numbers do
    not depend on which seeds moved with it. Returns the updated states of all seeds; metrics are (seeds, utd)."""
    write = jax.vmap(write_transition, in_axes=(0, 0, None, 0))
    write_jit = jax.jit(write, donate_argnums=(0,))
    train = jax.vmap(_online_updates(update, config, utd, offline_rows), in_axes=(0, 0, None))
    train_jit = jax.jit(train, compiler_options=compiler_options())

    def step(state: TrainState, buffers: Batch, transitions: Batch, index: int, size: int, active: np.ndarray,
             update: bool = True):  # fmt: skip
        buffers = write_jit(buffers, transitions, index, active)
        if not update:
            return state, buffers, {}
        state, metrics = train_jit(state, buffers, size)
        return state, buffers, metrics

    return step


@jax.jit
def select_seeds(active: jax.Array, new: Any, old: Any) -> Any:
    """Leaf by leaf, `new` for the seeds marked in `active` (the leading axis) and `old` for the others."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)
