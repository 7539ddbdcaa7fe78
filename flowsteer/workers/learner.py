"""The learner: agent state and replay data on one device, updated in compiled chunks.

Offline, the dataset sits on the device and `lax.scan` runs many updates per dispatch with batches drawn
inside the compiled step. Online, the dataset becomes the head of a fixed-capacity replay buffer on the
device (or, for learners that cannot use dataset transitions, such as DSRL-SAC, the buffer holds online
transitions only); each environment transition is written into it and followed by `utd` updates in one
dispatch. Learners with balanced sampling (RLPD, Cal-QL) draw half of every online batch from the dataset rows
and half from the online rows, which then wrap around within their own `buffer_size` rows and never overwrite
the dataset. Columns a learner computes from whole episodes (Cal-QL's Monte-Carlo returns) are added to the
dataset here; online rows hold the column's placeholder until their episode ends (`end_episode`).
The same class runs in-process and, wrapped by `ray.remote`, as an actor (on a GPU where one exists).

Metrics. `train` and `online_step` return one row: the metrics of the last update they ran (not a mean over the
chunk), with a column for every metric any of the learner's updates logs (`metric_names`, which fixes the columns
of train.csv). A metric the update did not compute is NaN, never 0.0, because 0 is a real loss: a steering
learner's critic losses while it pretrains its base, its base loss once the base is frozen, ReBRAC's actor
metrics on critic-only updates. train.csv writes such a cell as `nan` and reads it back as NaN; MLflow receives
no value for it (flowsteer.platform.tracking), so its history has gaps there instead of zeros.
Divergence (DivergedError) is a parameter that is not finite, or a metric that is not finite on an update that
computed it. Only the metrics an algorithm declares intermittent (`Algorithm.intermittent_metrics`) may be NaN
by design, and only NaN: an infinity in them is divergence, and a NaN loss that was computed reaches the
parameters through its gradient on the same update.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsteer.algorithms.columns import dataset_column
from flowsteer.algorithms.registry import Algorithm, get_algorithm
from flowsteer.algorithms.training import (
    TrainState,
    UpdateFn,
    action_chunk,
    draw_batch,
    make_update_chunk,
    online_update_fn,
    to_device_dataset,
)


class DivergedError(RuntimeError):
    """A loss or a parameter became NaN or infinite."""


class Learner:
    """Holds one agent and its data; `train` and `online_step` advance it, `policy_state` hands it out."""

    def __init__(
        self, algo: str, config: Any, dataset: dict[str, np.ndarray], seed: int, chunk_size: int = 1000
    ) -> None:
        self.algo = algo
        self.config = config
        self.algorithm = get_algorithm(algo)
        self.data = to_device_dataset(dataset)
        for column in self.algorithm.episode_columns:
            self.data[column.name] = jnp.asarray(dataset_column(config, column, dataset))
        self.offline_size = int(self.data["observations"].shape[0])
        obs_dim, act_dim = self.data["observations"].shape[1], self.data["actions"].shape[1]
        # A learner acting in chunks of H actions has networks over the flat chunk of H·d values (time-major).
        self.action_chunk = action_chunk(config)
        chunk_dim = act_dim * self.action_chunk
        self.state: TrainState = self.algorithm.init(config, obs_dim, chunk_dim, jax.random.PRNGKey(seed))
        self.chunk_size = chunk_size
        self._chunks: dict[tuple[UpdateFn, int], Any] = {}
        self.metric_names = _metric_names(self.algorithm, config, self.state, self.data)
        self._online = None
        self.size = self.offline_size  # rows of the buffer in use (online phase)
        self.capacity = self.offline_size
        self.head = self.offline_size  # buffer row of the first online transition
        self.wrap_start = 0  # the row online writes continue at once they reach the end of the buffer
        self.balanced = self.algorithm.balanced_sampling is not None and self.algorithm.balanced_sampling(config)
        self._episode_rows: list[tuple[int, dict[str, np.ndarray]]] = []  # (row, transition) of the running episode

    # ------------------------------------------------------------------ offline

    def train(self, steps: int) -> dict[str, float]:
        """Run `steps` offline updates; return the last update's metrics. Raises DivergedError on NaN/inf."""
        metrics: dict[str, float] = {}
        while steps > 0:
            update, n = self._next_offline_updates(min(self.chunk_size, steps), int(self.state.step))
            if (update, n) not in self._chunks:
                self._chunks[update, n] = make_update_chunk(update, self.config, n)
            state, stacked = self._chunks[update, n](self.state, self.data)
            metrics = self._accept(state, stacked)
            steps -= n
        return metrics

    def _next_offline_updates(self, n: int, done: int) -> tuple[UpdateFn, int]:
        """The update the next offline steps run, and how many of the next `n` it runs, after `done` updates: a
        steering learner pretrains its base during the run's first updates (Steering.pretrain_steps), then steers."""
        steering = self.algorithm.steering
        if steering is None:
            return self.algorithm.update, n
        pretrain = steering.pretrain_steps(self.config)
        if pretrain is None:
            return steering.pretrain_update, n
        if done < pretrain:
            return steering.pretrain_update, min(n, pretrain - done)
        return self.algorithm.update, n

    def _accept(self, state: TrainState, stacked: dict[str, Any]) -> dict[str, float]:
        """Take `state` unless the updates that made it diverged (see the module docstring); return the last
        update's metrics as one row of every metric in `metric_names`, NaN where this update computed none."""
        values = jax.device_get(stacked)
        failure = self._divergence(values, bool(_params_finite(state.params)))
        if failure is not None:
            raise failure
        self.state = state
        return self._last_row(values)

    def _divergence(self, values: dict[str, np.ndarray], params_finite: bool) -> DivergedError | None:
        """The DivergedError that `values` (one seed's metrics over a chunk) and its parameters show, if any."""
        intermittent = set(self.algorithm.intermittent_metrics)
        bad = sorted(k for k, v in values.items() if not np.all(np.isfinite(v) | (np.isnan(v) & (k in intermittent))))
        if bad or not params_finite:
            return DivergedError(f"{f'metrics {bad}' if bad else 'parameters'} became NaN or infinite")
        return None

    def _last_row(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """The last update's metrics as one row of every metric in `metric_names` (NaN where it computed none)."""
        last = {k: float(np.asarray(v)[-1]) for k, v in values.items()}
        return {name: last.get(name, math.nan) for name in self.metric_names}

    # ------------------------------------------------------------------ online

    def _buffer_layout(self, buffer_size: int) -> tuple[int, int]:
        """(capacity, first online row) of the online replay buffer: the dataset then max(buffer_size, |D| + 1) − |D|
        online rows; with balanced sampling the dataset then buffer_size online rows that wrap on themselves (the
        reference keeps the dataset and a `buffer_size` online buffer apart); for a learner that does not replay
        the dataset, buffer_size online rows only."""
        steering = self.algorithm.steering
        if self.balanced:
            return self.offline_size + buffer_size, self.offline_size
        if steering is None or steering.replay_dataset:
            return max(buffer_size, self.offline_size + 1), self.offline_size
        return buffer_size, 0

    def check_chunk_buffer(self, buffer_size: int, online_steps: int) -> None:
        """A chunk sampled across the row where the buffer wraps would join the newest transition to the oldest
        with no episode end between them, so with H > 1 the buffer must hold every online transition (QAM sizes it
        so: docs/chunking.md#online-replay). ValueError naming the buffer_size that does, before any work."""
        capacity, head = self._buffer_layout(buffer_size)
        if self.action_chunk == 1 or online_steps <= capacity - head:
            return
        least = online_steps if self.balanced else head + online_steps
        raise ValueError(
            f"buffer_size {buffer_size:,} holds {capacity - head:,} online transitions but the run collects "
            f"{online_steps:,}: with action_chunk {self.action_chunk} the replay buffer must not wrap around (a "
            f"sampled chunk would join the newest transition to the oldest). Set buffer_size to {least:,} or more."
        )

    def start_online(self, buffer_size: int, utd: int) -> None:
        """Turn the dataset into the head of the replay buffer (`_buffer_layout`), or start an empty one for a
        learner that does not replay the dataset. Columns the learner's exploration adds (e.g. DSRL-SAC's noises)
        are zeros until written."""
        steering = self.algorithm.steering
        self.capacity, self.head = self._buffer_layout(buffer_size)
        if self.balanced:
            self.wrap_start = self.offline_size
        if self.head == 0:
            self.size = 0
            self.data = {k: jnp.zeros((self.capacity, *v.shape[1:]), v.dtype) for k, v in self.data.items()}
        else:
            pad = self.capacity - self.offline_size
            self.data = {k: jnp.concatenate([v, jnp.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in self.data.items()}
        for name in steering.online_columns if steering else ():
            self.data[name] = jnp.zeros_like(self.data["actions"])
        offline_rows = self.offline_size if self.balanced else None
        self._online = online_update_fn(self.algorithm.update, self.config, utd, offline_rows)

    @property
    def online(self) -> bool:
        """Whether the online phase has started (the replay buffer exists)."""
        return self._online is not None

    def online_step(self, transition: dict[str, np.ndarray], index: int, update: bool = True) -> dict[str, float]:
        """Write `transition` at buffer row `index` (FIFO over the online rows), then run `utd` updates, or none
        during a warm-up (`update=False`: every metric of the row is NaN). Episode columns get their placeholder
        until `end_episode`."""
        assert self._online is not None, "call start_online first"
        columns = self.algorithm.episode_columns
        if columns:
            self._episode_rows.append((index, transition))
            transition = transition | {c.name: np.float32(c.placeholder) for c in columns}
        self.size = min(max(self.size, index + 1), self.capacity)
        state, self.data, stacked = self._online(self.state, self.data, transition, index, self.size, update)
        return self._accept(state, stacked)

    def end_episode(self) -> None:
        """The running online episode ended: compute its episode columns (Cal-QL's Monte-Carlo returns) and write
        them over the placeholders of its rows. Nothing for learners without episode columns."""
        rows, self._episode_rows = self._episode_rows, []
        for name, (index, values) in self._episode_values(rows).items():
            self.data[name] = self.data[name].at[index].set(values)

    def _episode_values(self, rows: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, tuple[np.ndarray, Any]]:
        """Per episode column: the buffer rows of an ended episode's transitions (row, transition) and the
        column's values there."""
        if not rows:
            return {}
        index = np.array([row for row, _ in rows])
        episode = {k: np.stack([np.asarray(t[k]) for _, t in rows]) for k in rows[0][1]}
        return {
            column.name: (index, jnp.asarray(column.compute(self.config, episode), self.data[column.name].dtype))
            for column in self.algorithm.episode_columns
        }

    def next_index(self, online_transitions: int) -> int:
        """Buffer row of the n-th online transition: after the dataset (if replayed), wrapping onto the oldest rows
        from `wrap_start` on (the dataset's first row, or the first online row under balanced sampling)."""
        span = self.capacity - self.wrap_start
        return self.wrap_start + (self.head - self.wrap_start + online_transitions) % span

    # ------------------------------------------------------------------ state exchange

    def set_base_policy(self, network: Any, params: Any) -> None:
        """Install a pretrained base policy (DSRL's `base_run`) into the agent state."""
        steering = self.algorithm.steering
        if steering is None:
            raise ValueError(f"{self.algo} does not steer a base policy")
        self.state = steering.with_base_policy(self.config, self.state, network, params)

    def policy_state(self) -> TrainState:
        """What acting needs (parameters, target parameters), without optimizer state, on the host."""
        return jax.device_get(self.state.replace(opt_state=None))

    def checkpoint_trees(self, online_transitions: int) -> dict[str, Any]:
        """Pytrees a checkpoint must hold: the agent state and the online rows of the buffer."""
        trees: dict[str, Any] = {"state": self.state}
        if self._online is not None:
            rows = self._online_rows(online_transitions)
            trees["online_buffer"] = {k: np.asarray(v)[rows] for k, v in self.data.items()}
        return trees

    def restore(self, trees: dict[str, Any], online_transitions: int) -> None:
        self.state = jax.tree_util.tree_map(jnp.asarray, trees["state"])
        if "online_buffer" in trees:
            rows = self._online_rows(online_transitions)
            self.data = {k: v.at[rows].set(trees["online_buffer"][k]) for k, v in self.data.items()}
            self.size = min(self.head + online_transitions, self.capacity)

    def _online_rows(self, online_transitions: int) -> np.ndarray:
        """Rows written by the online phase so far (all rows once it has wrapped around)."""
        span = self.capacity - self.wrap_start
        if online_transitions >= span:
            return np.arange(self.wrap_start, self.capacity)
        return self.wrap_start + (self.head - self.wrap_start + np.arange(online_transitions)) % span


def _metric_names(algorithm: Algorithm, config: Any, state: TrainState, data: dict[str, Any]) -> list[str]:
    """Every metric the learner's updates log, sorted: the columns of train.csv, fixed by its first row. A steering
    learner's pretraining and steering updates log different ones (found by tracing, without running them)."""
    steering = algorithm.steering
    updates, columns = [algorithm.update], dict(data)
    if steering is not None:
        if steering.pretrain_steps(config) != 0:
            updates.append(steering.pretrain_update)
        columns |= {name: data["actions"] for name in steering.online_columns}
    shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in columns.items()}
    batch = jax.eval_shape(lambda d: draw_batch(config, d, jax.random.PRNGKey(0)), shapes)
    names: set[str] = set()
    for update in updates:
        names |= set(jax.eval_shape(lambda s, b, u=update: u(config, s, b)[1], state, batch))
    return sorted(names)


@jax.jit
def _params_finite(params: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(params)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
