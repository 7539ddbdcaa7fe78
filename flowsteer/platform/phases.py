"""The phases of a run: offline updates, then online collection and updates, for one seed or a group of seeds.

Steps are counted globally: offline gradient steps 1..offline_steps, then online environment steps continue the
count. Work is cut at boundaries that depend only on the global step (multiples of chunk_size and of the log /
eval / checkpoint intervals), so a run resumed from a checkpoint repeats exactly the computation of a run that was
never interrupted.

A group's seeds move in lockstep, each with its own run directory, logs, evaluations, checkpoints and tracker
(`SeedRun`). Whenever they stand at different steps (a group resumed from checkpoints written at different steps,
since an online checkpoint waits for its seed's episode to end), only the seeds at the lowest step move, until the
others are reached; a seed that diverges stops alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flowsteer.algorithms.registry import warmup_steps
from flowsteer.datasets import OfflineTask, make_env
from flowsteer.platform import checkpoint
from flowsteer.platform.evaluation import Evaluator
from flowsteer.platform.spec import RunSpec
from flowsteer.platform.tracking import MlflowSync
from flowsteer.policies.interface import BasePolicy
from flowsteer.rundir import RunDirectory, schedule
from flowsteer.workers.learner import DivergedError
from flowsteer.workers.rollout import Collector, explore_policies

EVAL_STREAM, ONLINE_STREAM = 1, 2  # separate random streams: evaluation, online exploration and resets

# Called after each evaluation of a seed: its spec, the step and the results (a sweep reports them to Ray Tune).
EvaluationHook = Callable[[RunSpec, int, dict[str, float]], None]


class SeedRun:
    """One seed's run as the phases advance it: counters, logs, checkpoints, tracker and progress bar."""

    def __init__(
        self, index: int, spec: RunSpec, run_dir: RunDirectory, tracker: MlflowSync, start: Path | None, bar: tqdm
    ) -> None:
        self.index, self.spec, self.run_dir, self.tracker, self.start = index, spec, run_dir, tracker, start
        self.bar = bar
        self.step = 0
        self.online_transitions = 0
        self.episode = 0
        self.last_span = 0
        self.last_eval: dict[str, float] = {}
        self.last_sync = time.monotonic()
        self.checkpoint_due = False
        self.collector: Collector | None = None
        self.diverged: str | None = None  # the message of its divergence, once it diverged
        self.finished = False  # trained to its end, final checkpoint, status and tracker written
        self.meta = checkpoint.read_meta(start) if start is not None else None
        if self.meta is not None:  # counters now, so that the phases know where it stands; trees in `restore`
            self.step, self.online_transitions = self.meta["step"], self.meta["online_transitions"]
            self.episode, self.last_eval = self.meta["episode"], self.meta.get("last_eval", {})

    def in_online_phase(self) -> bool:
        """Whether its starting checkpoint was written in the online phase (its buffer holds online rows)."""
        meta = self.meta
        return meta is not None and (meta["phase"] == "online" or meta["online_transitions"] > 0)

    def diverge(self, exc: DivergedError) -> None:
        """Record the divergence in its run directory and tracker; the seed moves no more."""
        good = checkpoint.latest(self.run_dir.checkpoints)
        self.diverged = (
            f"run {self.spec.run_id} diverged between steps {self.step} and {self.step + self.last_span}: {exc}. "
            f"The last good checkpoint is {good or 'none (diverged before the first checkpoint)'}; lower the "
            f"learning rate or check the data before resuming."
        )
        self.run_dir.set_status("diverged", step=self.step, message=self.diverged)
        self.tracker.finish("FAILED")

    def sync(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_sync > 30:
            self.tracker.sync()
            self.last_sync = time.monotonic()


class Phases:
    """Drives the seeds of a run (one, or a group sharing one learner program) through both phases."""

    def __init__(
        self,
        seeds: list[SeedRun],
        learners: Any,
        config: Any,
        task: OfflineTask,
        evaluator: Evaluator,
        on_evaluation: EvaluationHook | None = None,
        base: BasePolicy | None = None,
    ) -> None:
        self.seeds, self.learners, self.config, self.task, self.evaluator = seeds, learners, config, task, evaluator
        self.spec = seeds[0].spec  # the settings every seed of the group shares (all but the seed)
        self.on_evaluation = on_evaluation
        self.base = base  # an external base policy the collectors decode with
        self._envs: list[Any] = []  # online environments this object made (the first seed uses the task's)

    def moving(self) -> list[SeedRun]:
        return [seed for seed in self.seeds if seed.diverged is None]

    # ------------------------------------------------------------------ checkpoints

    def restore(self, online: bool) -> None:
        """Put each seed whose starting checkpoint belongs to this phase into the learner (online: after the replay
        buffers exist). A seed without a checkpoint starts at step 0 from its initial state."""
        for seed in self.seeds:
            meta = seed.meta
            if meta is None or seed.in_online_phase() != online:
                continue
            templates = self.learners.checkpoint_trees_of(seed.index, meta["online_transitions"])
            assert seed.start is not None
            trees, meta = checkpoint.load(seed.start, templates)
            self.learners.restore_seed(seed.index, trees, meta["online_transitions"])
            seed.run_dir.cut_logs(meta["offsets"])
            seed.bar.update(seed.step)

    def save_checkpoint(self, seed: SeedRun, phase: str) -> None:
        meta = {
            "phase": phase,
            "online_transitions": seed.online_transitions,
            "episode": seed.episode,
            **seed.run_dir.log_state(),
            "last_eval": seed.last_eval,
            "run_id": seed.spec.run_id,
        }
        trees = self.learners.checkpoint_trees_of(seed.index, seed.online_transitions)
        checkpoint.save(seed.run_dir.checkpoints, seed.step, trees, meta)
        seed.sync(force=True)

    def finish(self) -> None:
        """Each seed that trained to its end: its final state (also when it ended inside an online episode), then
        its status and MLflow run, at once (a later failure of another seed does not make it 'failed')."""
        for seed in self.moving():
            last = checkpoint.latest(seed.run_dir.checkpoints)
            if last is None or checkpoint.step_of(last) != seed.step:
                self.save_checkpoint(seed, "final")
            seed.run_dir.set_status("finished", step=seed.step, last_eval=seed.last_eval)
            seed.tracker.finish("FINISHED")
            seed.finished = True

    # ------------------------------------------------------------------ offline

    def offline_phase(self) -> None:
        self.restore(online=False)
        end = self.spec.offline_steps
        while movers := self._lowest([s for s in self.moving() if s.step < end]):
            step = movers[0].step
            target = self._next_boundary(step, end)
            active = [any(seed.index == i for seed in movers) for i in range(len(self.learners.seeds))]
            for seed in movers:
                seed.last_span = target - step
            outcomes = self.learners.train_seeds(target - step, active)
            for seed in movers:
                outcome = outcomes[seed.index]
                if isinstance(outcome, DivergedError):
                    seed.diverge(outcome)
                    continue
                seed.step = target
                seed.bar.update(seed.last_span)
                self._after_step(seed, outcome, phase="offline")

    @staticmethod
    def _lowest(seeds: list[SeedRun]) -> list[SeedRun]:
        """The seeds at the lowest step: the ones that move next."""
        low = min((seed.step for seed in seeds), default=None)
        return [seed for seed in seeds if seed.step == low]

    def _next_boundary(self, step: int, end: int) -> int:
        spec = self.spec
        candidates = [end]
        for interval in (spec.chunk_size, spec.log_interval, spec.eval_interval, spec.checkpoint_interval):
            candidates.append((step // interval + 1) * interval)
        return min(candidates)

    def _after_step(self, seed: SeedRun, metrics: dict[str, float], phase: str) -> None:
        spec = self.spec
        end = spec.offline_steps if phase == "offline" else spec.offline_steps + spec.online_steps
        if seed.step % spec.log_interval == 0 or seed.step == end:
            seed.run_dir.append_row("train.csv", {"step": seed.step, **metrics})
        if schedule.is_evaluation_step(seed.step, spec.eval_interval, spec.offline_steps, spec.online_steps):
            self._evaluate(seed)
        if phase == "offline" and (seed.step % spec.checkpoint_interval == 0 or seed.step == end):
            self.save_checkpoint(seed, phase)
        else:
            seed.sync()

    def _evaluate(self, seed: SeedRun) -> None:
        if self.spec.eval_episodes == 0:
            return
        stream = stream_seed(stream_seed(seed.spec.seed, EVAL_STREAM), seed.step)
        results = self.evaluator.evaluate(self.learners.policy_state_of(seed.index), stream)
        seed.last_eval = results
        seed.run_dir.append_row("eval.csv", {"step": seed.step, **results})
        seed.bar.set_postfix(success=f"{results['success']:.2f}", refresh=False)
        if self.on_evaluation is not None:
            self.on_evaluation(seed.spec, seed.step, results)

    # ------------------------------------------------------------------ online

    def online_phase(self) -> None:
        spec = self.spec
        if spec.online_steps == 0:
            return
        end = spec.offline_steps + spec.online_steps
        if not any(seed.step < end for seed in self.moving()):
            return  # every seed diverged, or was restored at its end: no buffer, no environment
        if not self.learners.online:
            self.learners.start_online(spec.buffer_size, spec.utd)
        self.restore(online=True)
        policies = explore_policies(spec.algo, self.config, self.base)  # compiled once for the group
        for seed in self.moving():
            if seed.step < end:
                seed.collector = self._collector(seed, policies)
        # A learner's warm-up (DSRL-SAC: base-policy rollouts before any update) depends on the online step
        # alone, so a run resumed from a checkpoint warms up, or not, exactly as the uninterrupted run did.
        warmup = warmup_steps(spec.algo, self.config)
        while movers := self._lowest([s for s in self.moving() if s.step < end]):
            t = movers[0].online_transitions  # the same for every seed at this step
            warming_up = t < warmup
            stepped = {}
            for seed in movers:
                assert seed.collector is not None
                acting = self.learners.acting_state(seed.index)
                stepped[seed.index] = seed.collector.step(acting, t, warming_up)
                seed.last_span = 1
            index = self.learners.next_index(t)
            # QC and QAM collect start_training steps before the first online update (docs/chunking.md#steps).
            learning = not warming_up and t >= spec.start_training
            transitions = {i: transition for i, (transition, _) in stepped.items()}
            outcomes = self.learners.online_step_seeds(transitions, index, update=learning)
            for seed in movers:
                outcome = outcomes[seed.index]
                if isinstance(outcome, DivergedError):
                    seed.diverge(outcome)
                    continue
                self._after_online_step(seed, outcome, stepped[seed.index][1], end)

    def _after_online_step(self, seed: SeedRun, metrics: dict[str, float], episode_over: bool, end: int) -> None:
        seed.online_transitions += 1
        seed.step += 1
        seed.bar.update(1)
        seed.checkpoint_due |= seed.step % self.spec.checkpoint_interval == 0
        self._after_step(seed, metrics, phase="online")
        if episode_over:
            self.learners.end_episode_of(seed.index)  # e.g. Cal-QL's Monte-Carlo returns of the episode's rows
            seed.episode += 1
            assert seed.collector is not None
            seed.collector.reset(seed.episode)
            if seed.checkpoint_due or seed.step == end:
                # Only at episode ends: the next episode starts from a seeded reset, so no
                # simulator state has to be saved for resume to be exact.
                self.save_checkpoint(seed, "online")
                seed.checkpoint_due = False

    def _collector(self, seed: SeedRun, policies: tuple[Any, Any]) -> Collector:
        """Seed's online collector: the task's environment for the first, a fresh one (same options) for others."""
        if seed is self.seeds[0]:
            env = self.task.env
        else:
            env = make_env(seed.spec.task, seed.spec.task_options())
            self._envs.append(env)
        stream = stream_seed(seed.spec.seed, ONLINE_STREAM)
        collector = Collector(env, seed.spec.algo, self.config, stream, self.base, policies)
        collector.reset(seed.episode)
        return collector

    def close(self) -> None:
        for seed in self.seeds:
            seed.bar.close()
        for env in self._envs:
            env.close()
        self._envs = []


def stream_seed(seed: int, stream: int) -> int:
    """An independent 30-bit seed for one random stream of a run (evaluation, online collection)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] % 2**30)
