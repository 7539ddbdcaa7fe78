"""Evaluation of a run's policy on rollout workers: in-process, or Ray actors running in parallel.

Episodes 0..N-1 are split into contiguous blocks, one per worker; each episode's randomness depends only
on its index (see flowsteer.workers.rollout), so the numbers do not depend on the number of workers.
"""

from __future__ import annotations

import math
from typing import Any

from flowsteer.datasets.build import shard_bounds
from flowsteer.platform.spec import RunSpec
from flowsteer.policies.interface import BasePolicy
from flowsteer.policies.serving import BasePolicySource
from flowsteer.raycluster import ensure_ray
from flowsteer.workers.rollout import Episode, RolloutWorker, summarize


def episode_blocks(episodes: int, workers: int) -> list[list[int]]:
    """Contiguous, nearly equal blocks of episode indices, one per worker (empty blocks dropped)."""
    return [list(range(a, b)) for a, b in shard_bounds(episodes, workers)]


class Evaluator:
    """Owns the rollout workers of one run; use as a context manager so actors are always stopped."""

    def __init__(
        self, spec: RunSpec, config: Any, base: BasePolicySource | None = None, opened: BasePolicy | None = None
    ) -> None:
        self.spec = spec
        self.config = config
        self.base = base  # an external base policy, opened by each Ray worker as its serving mode says
        self.opened = opened  # the run's own handle of it, which an in-process worker uses
        self.remote = spec.use_ray or spec.eval_workers > 1
        self.workers: list[Any] = []
        self._started_ray = False

    def __enter__(self) -> Evaluator:
        spec = self.spec
        per_worker = max(1, math.ceil(max(spec.eval_episodes, 1) / spec.eval_workers))
        envs = min(spec.eval_envs, per_worker)
        if not self.remote:
            base = self.opened if self.opened is not None else self.base
            self.workers = [RolloutWorker(spec.task, envs, spec.algo, self.config, spec.task_options(), base)]
            return self
        import ray

        self._started_ray = ensure_ray()
        actor = ray.remote(num_cpus=1)(RolloutWorker)
        options = spec.task_options()
        self.workers = [
            actor.remote(spec.task, envs, spec.algo, self.config, options, self.base) for _ in range(spec.eval_workers)
        ]
        return self

    def evaluate(self, policy_state: Any, seed: int) -> dict[str, float]:
        blocks = episode_blocks(self.spec.eval_episodes, len(self.workers))
        if not self.remote:
            episodes = self.workers[0].run(policy_state, blocks[0], seed)
        else:
            import ray

            ref = ray.put(policy_state)
            parts = ray.get([w.run.remote(ref, b, seed) for w, b in zip(self.workers, blocks, strict=False)])
            episodes = [e for part in parts for e in part]
        return summarize(sorted(episodes, key=lambda e: e.index))

    def __exit__(self, *exc: object) -> None:
        if not self.remote:
            for worker in self.workers:
                worker.close()
        else:
            import ray

            for worker in self.workers:
                ray.kill(worker)
            if self._started_ray:
                ray.shutdown()
        self.workers = []


__all__ = ["Episode", "Evaluator", "episode_blocks"]
