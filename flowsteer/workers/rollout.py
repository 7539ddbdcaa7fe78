"""Evaluation episodes on several environments stepped together, with one batched policy call per step.

Every episode k draws its randomness from k alone: its reset seed is `seed + k` and its policy noise at
step t is `fold_in(fold_in(PRNGKey(seed), k), t)`. So results do not depend on how episodes are spread
over environments or rollout workers: one worker with ten environments and two workers with five give
the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from flowsteer.algorithms import get_algorithm
from flowsteer.algorithms.steering import external_base
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.datasets.options import TaskOptions
from flowsteer.policies.interface import BasePolicy
from flowsteer.policies.serving import BasePolicySource, open_base_policy

# policy(observations (n, obs_dim), keys (n, 2)) -> actions (n, act_dim); row i acts with key i only.
Policy = Callable[[np.ndarray, jax.Array], Any]


@dataclass(frozen=True)
class Episode:
    """One finished evaluation episode."""

    index: int
    success: float
    episode_return: float
    length: int


def make_policy(algo: str, config: Any, state: Any, deterministic: bool = True) -> Policy:
    """A jitted batched policy of a trained learner, as evaluation uses it (temperature 0 where defined)."""
    act = get_algorithm(algo).act
    return jax.jit(jax.vmap(lambda obs, key: act(config, state, obs[None], key, deterministic)[0]))


def make_state_policy(
    algo: str, config: Any, deterministic: bool = True, base: BasePolicy | None = None
) -> Callable[[Any, np.ndarray, Any], Any]:
    """Like `make_policy`, but the learner state is an argument: compiled once, fed new parameters. A learner that
    steers an external base (`base`, Steering.external) chooses the noise in JAX and `base` decodes it."""
    alg = get_algorithm(algo)
    if _steers_external(algo, config, base):
        assert alg.steering is not None and alg.steering.external is not None and base is not None
        act_noise = alg.steering.external.act_noise
        noise = _per_row(lambda state, obs, key: act_noise(config, state, obs, key, deterministic))
        return lambda state, obs, keys: base.decode(np.asarray(obs, np.float32), np.asarray(noise(state, obs, keys)))
    return _per_row(lambda state, obs, key: alg.act(config, state, obs, key, deterministic))


def _per_row(fn: Callable[[Any, jax.Array, jax.Array], Any]) -> Callable[[Any, np.ndarray, Any], Any]:
    """`fn(state, obs (1, d), key)` compiled over rows: row i sees its own observation and key only."""

    def row(state: Any, obs: jax.Array, key: jax.Array) -> Any:
        return jax.tree_util.tree_map(lambda x: x[0], fn(state, obs[None], key))

    return jax.jit(jax.vmap(row, (None, 0, 0)))


def _steers_external(algo: str, config: Any, base: BasePolicy | None) -> bool:
    """Whether this learner's config steers a base outside JAX; then `base` must be that base, opened."""
    path = external_base(get_algorithm(algo).steering, config)
    if path is not None and base is None:
        raise ValueError(f"{algo} steers the base policy {path}: open it (flowsteer.policies.serving) and pass it")
    if path is None and base is not None:
        raise ValueError(f"{algo} with this config decodes its own noise: it takes no external base policy")
    return path is not None


def make_explore_policy(
    algo: str, config: Any, warmup: bool = False, base: BasePolicy | None = None
) -> Callable[[Any, np.ndarray, Any], tuple[Any, dict[str, Any]]]:
    """The online-collection policy `(state, observations, keys) -> (actions, extra columns)`, compiled once.

    Steering learners with an `explore` function (DSRL-SAC) return what the replay buffer stores besides the
    action (the noise that was decoded into it); the others act with temperature 1 and store nothing else.
    `warmup` gives the learner's warm-up policy instead (Steering.warmup_explore: DSRL-SAC's base-policy rollouts).
    """
    alg = get_algorithm(algo)
    if _steers_external(algo, config, base):
        return _external_explore(algo, config, warmup, base)
    steer = alg.steering.explore if alg.steering is not None else None
    if warmup:
        steer = alg.steering.warmup_explore if alg.steering is not None else None
        if steer is None:
            raise ValueError(f"{algo} has no warm-up policy")

    def explore(state: Any, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        if steer is None:
            return alg.act(config, state, obs, key, False), {}
        return steer(config, state, obs, key)

    return _per_row(explore)


def _external_explore(
    algo: str, config: Any, warmup: bool, base: Any
) -> Callable[[Any, np.ndarray, Any], tuple[Any, dict[str, Any]]]:
    """Collection with an external base: the learner's noise (or its warm-up noise), decoded once by `base`; the
    replay buffer stores the noise next to the action, as with a base in JAX."""
    external = get_algorithm(algo).steering.external  # type: ignore[union-attr]
    choose = external.warmup_noise if warmup else external.explore_noise
    noise = _per_row(lambda state, obs, key: choose(config, state, obs, key))

    def explore(state: Any, obs: np.ndarray, keys: Any) -> tuple[np.ndarray, dict[str, Any]]:
        noises = np.asarray(noise(state, obs, keys))
        return base.decode(np.asarray(obs, np.float32), noises), {"noises": noises}

    return explore


@jax.jit
def _step_keys(base: jax.Array, episodes: np.ndarray, steps: np.ndarray) -> jax.Array:
    """Key of (episode, step) for every environment: one compiled call per step, not a trace."""
    return jax.vmap(lambda k, t: jax.random.fold_in(jax.random.fold_in(base, k), t))(episodes, steps)


def _reset(env: Any, seed: int) -> np.ndarray:
    # OGBench's locomaze draws from the global numpy RNG besides the env's own, so seed both.
    np.random.seed(seed)
    obs, _ = env.reset(seed=seed)
    return np.asarray(obs, np.float32)


def run_episodes(policy: Policy, envs: Sequence[Any], episodes: Sequence[int], seed: int = 0) -> list[Episode]:
    """Run the given episode indices over `envs`; results come back in episode order.

    Success is `info['success']` at the episode's last step, as the FQL evaluation reads it (seohongpark/fql
    utils/evaluation.py; docs/algorithms.md#run-protocol).
    A policy that returns chunks of H actions (H·d values per row, time-major) is executed open loop: one call per
    H environment steps, the rest of a chunk dropped when its episode ends (docs/chunking.md#open-loop-execution).
    Every call is made on all environments (idle ones and those inside a chunk pass their last observation and
    ignore the result), so the jitted policy sees one fixed batch shape; row i's key depends on its episode and
    step only, so results do not depend on how episodes are spread.
    """
    if not envs:
        raise ValueError("need at least one environment")
    base = jax.random.PRNGKey(seed)
    queue = list(episodes)
    current: list[int | None] = [None] * len(envs)
    obs = np.zeros((len(envs), *envs[0].observation_space.shape), np.float32)
    act_dim = envs[0].action_space.shape[-1]
    steps = np.zeros(len(envs), np.int64)
    returns = np.zeros(len(envs))
    chunks = ActionQueues(len(envs), act_dim)
    finished: list[Episode] = []

    def start(i: int) -> None:
        current[i] = queue.pop(0) if queue else None
        chunks.clear(i)
        if current[i] is not None:
            obs[i] = _reset(envs[i], seed + current[i])
            steps[i], returns[i] = 0, 0.0

    for i in range(len(envs)):
        start(i)
    while any(c is not None for c in current):
        if chunks.empty(i for i, c in enumerate(current) if c is not None):
            ids = np.array([c if c is not None else 0 for c in current], np.uint32)
            keys = _step_keys(base, ids, steps.astype(np.uint32))
            chunks.refill(np.asarray(policy(obs, keys)), [c is not None for c in current])
        for i, env in enumerate(envs):
            if current[i] is None:
                continue
            next_obs, reward, terminated, truncated, info = env.step(np.clip(chunks.pop(i), -1.0, 1.0))
            obs[i] = next_obs
            returns[i] += float(reward)
            steps[i] += 1
            if terminated or truncated:
                finished.append(Episode(current[i], float(info.get("success", 0.0)), returns[i], int(steps[i])))
                start(i)
    return sorted(finished, key=lambda e: e.index)


class ActionQueues:
    """The actions each environment still has to execute from its last policy call (Q-chunking's open-loop action
    queue, Li et al. 2025; docs/chunking.md#open-loop-execution). With H = 1 every step refills every queue."""

    def __init__(self, num_envs: int, act_dim: int) -> None:
        self.act_dim = act_dim
        self.pending: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    def empty(self, rows: Any) -> bool:
        """Whether any of `rows` needs a policy call before its next step."""
        return any(not self.pending[i] for i in rows)

    def refill(self, outputs: np.ndarray, active: Sequence[bool]) -> None:
        """Queue the chunk of each active row whose queue is empty; the other rows ignore their output."""
        if outputs.shape[-1] % self.act_dim:
            raise ValueError(
                f"the policy returned {outputs.shape[-1]} values per row, not a multiple of the environment's "
                f"{self.act_dim} action dimensions"
            )
        chunks = outputs.reshape(len(self.pending), -1, self.act_dim)
        for i, pending in enumerate(self.pending):
            if active[i] and not pending:
                pending.extend(chunks[i])

    def pop(self, row: int) -> np.ndarray:
        return self.pending[row].pop(0)

    def clear(self, row: int) -> None:
        """The row's episode ended: the rest of its chunk is not executed."""
        self.pending[row] = []


def summarize(episodes: Sequence[Episode]) -> dict[str, float]:
    """Means over episodes, named as flowsteer logs them (eval.csv columns)."""
    if not episodes:
        raise ValueError("no episodes to summarize")
    return {
        "success": float(np.mean([e.success for e in episodes])),
        "episode_return": float(np.mean([e.episode_return for e in episodes])),
        "episode_length": float(np.mean([e.length for e in episodes])),
        "episodes": float(len(episodes)),
    }


def evaluate(policy: Policy, envs: Sequence[Any], num_episodes: int, seed: int = 0) -> dict[str, float]:
    """Run episodes 0..num_episodes-1 over `envs` and summarize them."""
    if num_episodes < 1:
        raise ValueError("need at least one episode")
    return summarize(run_episodes(policy, envs, range(num_episodes), seed))


class RolloutWorker:
    """A set of environments of one task and a compiled policy; evaluates episodes for given parameters.

    Runs in-process, or as a Ray actor (`ray.remote(RolloutWorker)`); parameters arrive as host arrays.
    """

    def __init__(
        self,
        task: str,
        num_envs: int,
        algo: str,
        config: Any,
        options: TaskOptions | None = None,
        base: BasePolicySource | BasePolicy | None = None,
    ) -> None:
        from flowsteer.datasets import make_env

        apply_cpu_tweaks()  # as the run loop does: a Ray actor is a process of its own
        # A Ray worker opens the source (its own copy, or a client of the actor); in-process, the run's is reused.
        opened = open_base_policy(base) if isinstance(base, BasePolicySource) else base
        self.envs = [make_env(task, options) for _ in range(num_envs)]  # the options of the run's data and online env
        self.policy = make_state_policy(algo, config, deterministic=True, base=opened)

    def run(self, policy_state: Any, episodes: Sequence[int], seed: int) -> list[Episode]:
        state = jax.device_put(policy_state)
        return run_episodes(lambda obs, keys: self.policy(state, obs, keys), self.envs, list(episodes), seed)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def explore_policies(algo: str, config: Any, base: BasePolicy | None = None) -> tuple[Any, Any]:
    """A learner's online policies: exploration, and its warm-up policy (Steering.warmup_explore) or None."""
    steering = get_algorithm(algo).steering
    has_warmup = steering is not None and steering.warmup_explore is not None
    warmup = make_explore_policy(algo, config, warmup=True, base=base) if has_warmup else None
    return make_explore_policy(algo, config, base=base), warmup


class Collector:
    """One environment collecting online transitions, as the FQL protocol does (one environment step, then
    `utd` updates). Episode e starts from a reset seeded by (seed, e) alone and the exploration noise of
    online step t is `fold_in(PRNGKey(seed), t)`, so a run resumed at an episode boundary continues exactly.
    A step with `warmup` acts with the learner's warm-up policy (Steering.warmup_explore).
    """

    def __init__(
        self,
        env: Any,
        algo: str,
        config: Any,
        seed: int,
        base: BasePolicy | None = None,
        policies: tuple[Any, Any] | None = None,
    ) -> None:
        self.env = env
        self.seed = seed
        # The seeds of a group share one compiled pair (explore_policies) instead of compiling their own.
        self.policy, self.warmup_policy = policies or explore_policies(algo, config, base)
        self.explore = jax.random.PRNGKey(seed)
        self.obs = np.zeros(env.observation_space.shape, np.float32)
        self.queue = ActionQueues(1, env.action_space.shape[-1])

    def reset(self, episode: int) -> None:
        self.obs = _reset(self.env, int(np.random.SeedSequence([self.seed, episode]).generate_state(1)[0]))
        self.queue.clear(0)  # the rest of a chunk is not executed in the next episode

    def step(self, policy_state: Any, t: int, warmup: bool = False) -> tuple[dict[str, np.ndarray], bool]:
        """Act in the current episode; returns the transition the replay buffer stores and whether it ended. A
        chunked policy is called at the first online step of each chunk (noise `fold_in(PRNGKey(seed), t)` of that
        step) and its actions are executed open loop over the next H steps."""
        extra: dict[str, Any] = {}
        if self.queue.empty([0]):
            key = jax.random.fold_in(self.explore, t)[None]
            policy = self.warmup_policy if warmup else self.policy
            if policy is None:
                raise ValueError("this learner has no warm-up policy (Steering.warmup_explore)")
            actions, extra = policy(policy_state, self.obs[None], key)
            self.queue.refill(np.asarray(actions), [True])
        action = np.clip(self.queue.pop(0), -1.0, 1.0)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        transition = {
            "observations": self.obs,
            "actions": action,
            "rewards": np.float32(reward),
            "masks": np.float32(1.0 - float(terminated)),  # truncation keeps the bootstrap (docs/pitfalls.md pitfall 8)
            "terminals": np.float32(terminated or truncated),
            "next_observations": next_obs,
            **{name: np.asarray(values)[0] for name, values in extra.items()},
        }
        self.obs = next_obs
        return transition, bool(terminated or truncated)
