"""Seeds of one setting trained together: one program, `jax.vmap`ped over a leading seed axis.

A `SeedGroup` holds the states of N seeds stacked along a leading axis and the dataset once, shared by every seed,
offline; online, each seed has its own replay buffer (its online rows, and the dataset rows that its FIFO later
overwrites, are its own). Every call moves the seeds marked `active` and leaves the others as they were: all seeds
compute in the same program and the results of the others are dropped (`select_seeds`). So a seed's numbers do not
depend on which seeds moved with it, nor on a diverged neighbour (its NaN stays in its own rows of the batch), and a
group resumed with its seeds at different steps lets the late ones catch up in the very program of the
uninterrupted group. The program does depend on the group's size: a batched matmul rounds differently from the
single seed's matmul (about 1 ulp per update on CPU), so a seed trained in a group of N equals the same seed trained
alone to float rounding, not bit for bit (docs/seed-groups.md).

`OneSeed` gives a single `Learner` the same interface, so that the run loop drives one seed and a group alike, and
a single run keeps its own, unvmapped program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsteer.algorithms.training import (
    TrainState,
    group_online_update_fn,
    init_seeds,
    make_update_chunk,
    select_seeds,
)
from flowsteer.workers.learner import DivergedError, Learner, _params_finite

# Per seed of a group: its metrics row, or why it diverged; seeds that did not move are absent.
Outcomes = dict[int, dict[str, float] | DivergedError]


class SeedGroup(Learner):
    """The learners of `seeds` (one algorithm, config and dataset) in one vmapped program; seed i is row i."""

    def __init__(
        self, algo: str, config: Any, dataset: dict[str, np.ndarray], seeds: list[int], chunk_size: int = 1000
    ) -> None:
        super().__init__(algo, config, dataset, seeds[0], chunk_size)
        self.seeds = list(seeds)
        obs_dim = self.data["observations"].shape[1]
        chunk_dim = self.data["actions"].shape[1] * self.action_chunk
        # Row i equals the single learner's init(PRNGKey(seeds[i])).
        self.state = init_seeds(self.algorithm.init, config, obs_dim, chunk_dim, self.seeds)
        self.sizes = np.full(len(self.seeds), self.size)  # buffer rows in use, per seed (online)
        self._group_rows: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}  # per seed: its episode's rows

    # ------------------------------------------------------------------ offline

    def train_seeds(self, steps: int, active: list[bool]) -> Outcomes:
        """Run `steps` offline updates of the seeds marked in `active` (all at the same step); the others keep
        their state. A seed that diverges keeps its last good state, reports its DivergedError and stops moving."""
        moving = np.array(active, bool)
        outcomes: Outcomes = {}
        done = int(self.state.step[int(np.argmax(moving))])
        while steps > 0 and moving.any():
            update, n = self._next_offline_updates(min(self.chunk_size, steps), done)
            if (update, n) not in self._chunks:
                self._chunks[update, n] = make_update_chunk(update, self.config, n, vmap_seeds=True)
            state, stacked = self._chunks[update, n](self.state, self.data)
            moving = self._accept_seeds(state, stacked, moving, outcomes)
            steps -= n
            done += n
        return outcomes

    def _accept_seeds(self, state: TrainState, stacked: dict[str, Any], moving: np.ndarray, outcomes: Outcomes):
        """Keep `state`'s rows of the seeds in `moving` whose updates did not diverge; record each seed's outcome.
        Returns the seeds that go on moving."""
        values = jax.device_get(stacked)
        finite = np.asarray(jax.device_get(_seeds_finite(state.params)))
        accepted = moving.copy()
        for i in np.flatnonzero(moving):
            row = {k: np.asarray(v)[i] for k, v in values.items()}
            failure = self._divergence(row, bool(finite[i]))
            if failure is not None:
                accepted[i] = False
                outcomes[int(i)] = failure
            else:
                outcomes[int(i)] = self._last_row(row)
        # Every seed moved and none diverged (the usual step): the new state as it is, without copying it.
        self.state = state if accepted.all() else select_seeds(jnp.asarray(accepted), state, self.state)
        return accepted

    # ------------------------------------------------------------------ online

    def start_online(self, buffer_size: int, utd: int) -> None:
        """Each seed gets the replay buffer a single learner starts (`Learner.start_online`), stacked."""
        super().start_online(buffer_size, utd)
        group = len(self.seeds)
        self.data = {k: jnp.tile(v[None], (group,) + (1,) * v.ndim) for k, v in self.data.items()}
        self.sizes = np.full(group, self.size)
        offline_rows = self.offline_size if self.balanced else None
        self._online = group_online_update_fn(self.algorithm.update, self.config, utd, offline_rows)

    def online_step_seeds(
        self, transitions: dict[int, dict[str, np.ndarray]], index: int, update: bool = True
    ) -> Outcomes:
        """The seeds in `transitions` (all at the same online step) write theirs at buffer row `index`, then run
        `utd` updates (none with `update=False`: every metric of their rows is NaN)."""
        assert self._online is not None, "call start_online first"
        columns = self.algorithm.episode_columns
        moving = np.zeros(len(self.seeds), bool)
        moving[list(transitions)] = True
        template = next(iter(transitions.values()))
        if columns:
            placeholders = {c.name: np.float32(c.placeholder) for c in columns}
            for i, transition in transitions.items():
                self._group_rows.setdefault(i, []).append((index, transition))
            transitions = {i: t | placeholders for i, t in transitions.items()}
            template = template | placeholders
        rows = [transitions.get(i, {k: np.zeros_like(v) for k, v in template.items()}) for i in range(len(self.seeds))]
        stacked = {k: np.stack([np.asarray(row[k]) for row in rows]) for k in template}
        size = min(max(int(self.sizes[moving].max()), index + 1), self.capacity)
        self.sizes[moving] = size
        state, self.data, metrics = self._online(self.state, self.data, stacked, index, size, moving, update)
        if not update:  # a warm-up step: stored, nothing learnt, every metric NaN
            return {int(i): self._last_row({}) for i in np.flatnonzero(moving)}
        outcomes: Outcomes = {}
        self._accept_seeds(state, metrics, moving, outcomes)
        return outcomes

    def end_episode_of(self, i: int) -> None:
        """Seed i's online episode ended: its episode columns (Cal-QL's Monte-Carlo returns) over its rows."""
        for name, (index, values) in self._episode_values(self._group_rows.pop(i, [])).items():
            self.data[name] = self.data[name].at[i, index].set(values)

    # ------------------------------------------------------------------ state exchange

    def set_base_policy(self, network: Any, params: Any) -> None:
        """The same pretrained base (DSRL's `base_run`) in every seed's state."""
        steering = self.algorithm.steering
        if steering is None:
            raise ValueError(f"{self.algo} does not steer a base policy")
        self.state = jax.vmap(lambda state: steering.with_base_policy(self.config, state, network, params))(self.state)

    def acting_state(self, i: int) -> TrainState:
        """Seed i's state as an acting process needs it (no optimizer state), on the device."""
        return _row(self.state.replace(opt_state=None), i)

    def policy_state_of(self, i: int) -> TrainState:
        """Seed i's `Learner.policy_state`: parameters and target parameters, on the host."""
        return jax.device_get(self.acting_state(i))

    def checkpoint_trees_of(self, i: int, online_transitions: int) -> dict[str, Any]:
        """Seed i's checkpoint: exactly the trees a single learner of that seed saves (`Learner.checkpoint_trees`)."""
        trees: dict[str, Any] = {"state": _row(self.state, i)}
        if self._online is not None:
            rows = self._online_rows(online_transitions)
            trees["online_buffer"] = {k: np.asarray(v[i])[rows] for k, v in self.data.items()}
        return trees

    def restore_seed(self, i: int, trees: dict[str, Any], online_transitions: int) -> None:
        """Put a single learner's checkpoint trees (`checkpoint_trees_of`) into row i."""
        self.state = _set_row(self.state, i, trees["state"])
        if "online_buffer" in trees:
            rows = self._online_rows(online_transitions)
            self.data = {k: v.at[i, rows].set(trees["online_buffer"][k]) for k, v in self.data.items()}
            self.sizes[i] = min(self.head + online_transitions, self.capacity)


class OneSeed:
    """A single `Learner` behind the group interface of `SeedGroup` (seed 0 of a group of one)."""

    def __init__(self, learner: Learner, seed: int) -> None:
        self.learner = learner
        self.seeds = [seed]

    def __getattr__(self, name: str) -> Any:  # check_chunk_buffer, start_online, online, next_index, ...
        return getattr(self.learner, name)

    def train_seeds(self, steps: int, active: list[bool]) -> Outcomes:
        if not active[0]:
            return {}
        try:
            return {0: self.learner.train(steps)}
        except DivergedError as exc:
            return {0: exc}

    def online_step_seeds(
        self, transitions: dict[int, dict[str, np.ndarray]], index: int, update: bool = True
    ) -> Outcomes:
        try:
            return {0: self.learner.online_step(transitions[0], index, update)}
        except DivergedError as exc:
            return {0: exc}

    def end_episode_of(self, i: int) -> None:
        self.learner.end_episode()

    def acting_state(self, i: int) -> TrainState:
        return self.learner.state

    def policy_state_of(self, i: int) -> TrainState:
        return self.learner.policy_state()

    def checkpoint_trees_of(self, i: int, online_transitions: int) -> dict[str, Any]:
        return self.learner.checkpoint_trees(online_transitions)

    def restore_seed(self, i: int, trees: dict[str, Any], online_transitions: int) -> None:
        self.learner.restore(trees, online_transitions)


def make_learners(algo: str, config: Any, dataset: dict[str, np.ndarray], seeds: list[int], chunk_size: int):
    """The learner of a run: `OneSeed` for one seed (the single run's own program), else a `SeedGroup`."""
    if len(seeds) == 1:
        return OneSeed(Learner(algo, config, dataset, seeds[0], chunk_size), seeds[0])
    return SeedGroup(algo, config, dataset, seeds, chunk_size)


@jax.jit
def _seeds_finite(params: Any) -> jax.Array:
    return jax.vmap(_params_finite)(params)


@jax.jit
def _row(tree: Any, i: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


@jax.jit
def _set_row(tree: Any, i: jax.Array, row: Any) -> Any:
    return jax.tree_util.tree_map(lambda leaf, value: leaf.at[i].set(jnp.asarray(value, leaf.dtype)), tree, row)
