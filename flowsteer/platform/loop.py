"""The run loop: offline phase, online phase, evaluations, logs, checkpoints, tracking.

Steps are counted globally: offline gradient steps 1..offline_steps, then online environment steps
continue the count. Work is cut at boundaries that depend only on the global step (multiples of
chunk_size and of the log / eval / checkpoint intervals), so a run resumed from a checkpoint repeats
exactly the computation of a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from flowsteer.algorithms.presets import unsourced_note
from flowsteer.algorithms.registry import get_algorithm, warmup_steps
from flowsteer.algorithms.steering import external_base
from flowsteer.algorithms.training import action_chunk
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.datasets import OfflineTask, load_task
from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.options import effective_timing, reward_rule
from flowsteer.platform import checkpoint
from flowsteer.platform.base_policy import FlowBasePolicy, load_base_policy, open_external_base
from flowsteer.platform.evaluation import Evaluator
from flowsteer.platform.spec import RunSpec, RunSpecError, identity_of, without_neutral
from flowsteer.platform.tracking import MlflowSync, flat_params
from flowsteer.policies.interface import BasePolicy
from flowsteer.policies.serving import BasePolicySource
from flowsteer.rundir import RunDirectory, RunDirectoryError, RunFileError, RunWarning, schedule
from flowsteer.workers.learner import DivergedError, Learner
from flowsteer.workers.rollout import Collector

# An external base policy as a run holds it: the source every acting process opens, and this process's handle.
External = tuple[BasePolicySource, BasePolicy]

_EVAL_STREAM, _ONLINE_STREAM = 1, 2  # separate random streams: evaluation, online exploration and resets


class RunDiverged(RuntimeError):
    """The run stopped because a loss or parameter became NaN/inf; the last good checkpoint is kept."""


@dataclass
class RunResult:
    """Where a run's results are and what it ended with."""

    run_dir: Path
    status: str
    step: int
    last_eval: dict[str, float]
    seconds: float


def run(
    spec: RunSpec,
    *,
    resume: bool = False,
    progress: bool = True,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
    lock_wait: float = 0.0,
) -> RunResult:
    """Execute ``spec`` (resuming from its last checkpoint if ``resume``); returns a RunResult.

    ``on_evaluation(step, results)`` is called after each evaluation (a sweep reports it to Ray Tune). The run
    directory has one owner at a time: another process running the same run raises RunBusyError at once, or
    after ``lock_wait`` seconds (a sweep's retry waits for a lost node's lock to expire).
    """
    apply_cpu_tweaks()  # before anything is compiled; once per process
    started = time.perf_counter()
    run_dir = RunDirectory(spec.run_dir)
    config = spec.algo_config()
    record = _record(spec, config)
    _check_writable(run_dir.path.parent)
    with run_dir.owned(spec.run_id, wait=lock_wait):
        _check_same_run(run_dir, record)
        status = _status(run_dir)
        if status["state"] == "finished":
            return RunResult(run_dir.path, "finished", status.get("step", 0), status.get("last_eval", {}), 0.0)
        start = _starting_checkpoint(run_dir, resume)
        # A base policy file is checked before the data: a bad file fails at once, not after minutes of generation.
        external = _external_base(spec, config, run_dir if start is not None else None)
        try:
            task = load_task(spec.task, progress=progress, options=spec.task_options(), **spec.data.model_dump())
        except BaseException:
            _close_external(external)
            raise
        try:
            base = _base_policy(spec.algo, config, task)  # before any work: a bad base_run fails here
        except BaseException:
            task.env.close()
            _close_external(external)
            raise
        run_dir.write_config(record)  # only now: an attempt that failed on its data leaves nothing behind
        return _execute(spec, config, run_dir, task, base, external, start, progress, on_evaluation, started)


def _execute(
    spec: RunSpec,
    config: Any,
    run_dir: RunDirectory,
    task: OfflineTask,
    base: FlowBasePolicy | None,
    external: External | None,
    start: Path | None,
    progress: bool,
    on_evaluation: Callable[[int, dict[str, float]], None] | None,
    started: float,
) -> RunResult:
    """Train from ``start`` (a checkpoint, or None for step 0) to the end; whatever stops it is recorded."""
    tracker = MlflowSync(run_dir, spec.resolved_tracking_uri(), spec.experiment, spec.run_id, _tags(spec))
    loop: _Loop | None = None
    step = 0 if start is None else checkpoint.step_of(start)
    try:
        facts = protocol(spec, config, task)
        if base is not None:
            facts["base_policy"] = base.provenance | base.info.provenance()
        if external is not None:
            facts["base_policy"] = external[1].info.provenance() | {"serving": spec.base_serving}
        tracker.start(flat_params(json.loads(json.dumps(_record(spec, config), default=str)), facts))
        run_dir.write_protocol(facts)
        if start is None:
            run_dir.reset_logs()  # never append a new run's rows to an earlier attempt's
        run_dir.set_status("running", step=step)
        loop = _Loop(spec, config, run_dir, task, tracker, progress, on_evaluation, external)  # may fail: OOM
        if base is not None:
            loop.install_base_policy(base)
        with loop.evaluator:
            loop.restore(start)
            loop.offline_phase()
            loop.online_phase()
            loop.save_final_checkpoint()
    except DivergedError as exc:
        assert loop is not None
        good = checkpoint.latest(run_dir.checkpoints)
        message = (
            f"run {spec.run_id} diverged between steps {loop.step} and {loop.step + loop.last_span}: {exc}. "
            f"The last good checkpoint is {good or 'none (diverged before the first checkpoint)'}; lower the "
            f"learning rate or check the data before resuming."
        )
        run_dir.set_status("diverged", step=loop.step, message=message)
        tracker.finish("FAILED")
        raise RunDiverged(message) from None
    except BaseException as exc:
        state = "failed" if isinstance(exc, Exception) else "interrupted"
        run_dir.set_status(state, step=loop.step if loop else step, message=f"{type(exc).__name__}: {exc}"[:2000])
        tracker.finish("FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    finally:
        if loop is not None:
            loop.bar.close()
        task.env.close()
        _close_external(external)
    run_dir.set_status("finished", step=loop.step, last_eval=loop.last_eval)
    tracker.finish("FINISHED")
    return RunResult(run_dir.path, "finished", loop.step, loop.last_eval, time.perf_counter() - started)


def _record(spec: RunSpec, config: Any) -> dict[str, Any]:
    """config.json: the RunSpec, its id and the algorithm config it resolved to."""
    return {"run": spec.to_dict(), "run_id": spec.run_id, "algo_config": dataclasses.asdict(config)}


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot create run directories in {output_dir} ({exc.strerror or exc}); choose a writable --output-dir."
        ) from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"cannot write to {output_dir} (permission denied); choose a writable --output-dir.")


def _check_same_run(run_dir: RunDirectory, record: dict[str, Any]) -> None:
    """The directory named by this run's id must hold this run: same identity, same algorithm config. Where and
    how it runs (output_dir, tracking, workers, cache) may change between attempts."""
    try:
        existing = run_dir.config()
    except RunFileError as exc:
        raise RunFileError(f"{exc} It records which run the directory holds: restore it, or move "
                           f"{run_dir.path} away to start the run over.") from None  # fmt: skip
    if existing is None:
        return
    stored = json.loads(json.dumps(existing, default=str))
    wanted = json.loads(json.dumps(record, default=str))
    ours = identity_of(wanted["run"]) | {"algo_config": without_neutral(wanted["algo_config"])}
    theirs = identity_of(stored.get("run") or {}) | {"algo_config": without_neutral(stored.get("algo_config") or {})}
    differing = _differences(theirs, ours)
    if differing:
        shown = "; ".join(f"{key}: {old!r} there, {new!r} now" for key, old, new in differing[:4])
        raise RunDirectoryError(
            f"{run_dir.path} holds a different run than its name says ({shown}). Its config.json was edited or "
            f"written by another flowsteer version (an algorithm default or preset changed). Finish it with "
            f"that version, or move the directory away to start this run over."
        )


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append((f"{prefix}{key}", a, b))
    return found


def _status(run_dir: RunDirectory) -> dict[str, Any]:
    """status.json, or 'unknown' (with a warning) when it is damaged: the checkpoints still tell where to go on."""
    try:
        return run_dir.status()
    except RunFileError as exc:
        warnings.warn(f"{exc} Treating the run as unfinished.", RunWarning, stacklevel=3)
        return {"state": "unknown"}


def _starting_checkpoint(run_dir: RunDirectory, resume: bool) -> Path | None:
    """Where the run starts: None (step 0) when it has no checkpoint, else its newest readable checkpoint, whose
    logs must still hold what the run had written by then. Without ``resume`` an unfinished run is refused."""
    found = checkpoint.candidates(run_dir.checkpoints)
    if found and not resume:
        raise RunDirectoryError(
            f"{run_dir.path} holds an unfinished run (checkpoint {found[0].name}). Resume it with --resume "
            f"(flowsteer train ... --resume), or move the directory away to start over."
        )
    start = checkpoint.newest_readable(run_dir.checkpoints)
    if start is not None:
        meta = checkpoint.read_meta(start)
        run_dir.check_logs(meta["offsets"], meta.get("log_sha256"), start.name)
    return start


def _base_policy(algo: str, config: Any, task: OfflineTask) -> FlowBasePolicy | None:
    """The pretrained base policy that a steering learner's config names (DSRL's `base_run`), if any."""
    steering = get_algorithm(algo).steering
    base_run = steering.base_run(config) if steering is not None else None
    if base_run is None:
        return None
    train = task.train
    obs_dim, act_dim = train["observations"].shape[-1], train["actions"].shape[-1]
    return load_base_policy(base_run, obs_dim, act_dim, action_chunk(config), flow_steps=config.flow_steps)


def _external_base(spec: RunSpec, config: Any, resumed: RunDirectory | None) -> External | None:
    """The base policy file that the learner's config steers outside JAX (DSRL-SAC's `base_policy`), opened and
    checked against the task's shapes (from the catalog, so before any data is read). A resumed run must steer the
    bytes it started with: the checksum in its protocol."""
    path = external_base(get_algorithm(spec.algo).steering, config)
    if path is None:
        return None
    expected = None
    if resumed is not None:
        try:
            expected = ((resumed.protocol() or {}).get("base_policy") or {}).get("sha256")
        except RunFileError as exc:
            raise RunFileError(f"{exc} It records which base policy the run steers: restore it, or move "
                               f"{resumed.path} away to start the run over.") from None  # fmt: skip
        if expected is None:
            raise RunSpecError(
                f"{resumed.path}/protocol.json does not record the base policy this run steered (its sha256), so "
                "resuming cannot check that the file is the same: restore the protocol, or start the run over"
            )
    family = parse_task(spec.task).dataset.family
    shapes = (family.obs_dim, family.act_dim, action_chunk(config))
    return open_external_base(path, spec.base_device, spec.base_serving, *shapes, expected)


def _close_external(external: External | None) -> None:
    if external is not None and hasattr(external[1], "close"):
        external[1].close()  # a base-policy actor this run started Ray for


def _tags(spec: RunSpec) -> dict[str, str]:
    tags = {"algo": spec.algo, "task": spec.task, "seed": str(spec.seed), "run_id": spec.run_id, "flowsteer": "run"}
    return tags | ({"sweep": spec.sweep} if spec.sweep else {})


def protocol(spec: RunSpec, config: Any, task: OfflineTask) -> dict[str, Any]:
    """How the numbers of this run were made: versions, data provenance, seeds, evaluation schedule."""
    packages = ["flowsteer", "jax", "jaxlib", "flax", "optax", "ogbench", "mujoco", "gymnasium", "numpy"]
    return {
        "run_id": spec.run_id,
        "algo": spec.algo,
        "task": spec.task,
        "setting": spec.setting,
        "seed": spec.seed,
        "seeds": {
            "learner": f"PRNGKey({spec.seed})",
            "evaluation": f"episode k at step s: reset seed S(S({spec.seed}, {_EVAL_STREAM}), s) + k, "
            f"policy noise fold_in(fold_in(PRNGKey(that seed - k), k), t)",
            "online": f"episode e: reset seed T(S({spec.seed}, {_ONLINE_STREAM}), e); noise at online step t: "
            f"fold_in(PRNGKey(S({spec.seed}, {_ONLINE_STREAM})), t)",
            "S": "S(a, b) = numpy SeedSequence([a, b]).generate_state(1)[0] modulo 2**30",
            "T": "T(a, b) = numpy SeedSequence([a, b]).generate_state(1)[0] (32 bits, no modulo)",
        },
        "offline_steps": spec.offline_steps,
        "online_steps": spec.online_steps,
        "utd": spec.utd,
        "action_chunk": spec.action_chunk,
        "start_training": spec.start_training,
        "steps": "offline: gradient steps, each on a batch of batch_size chunks of action_chunk consecutive dataset "
        "rows (single transitions when 1); online: environment steps, each followed by utd updates; the policy is "
        "called once per action_chunk environment steps and its chunk executed open loop, the rest of a chunk "
        "dropped when its episode ends (docs/chunking.md)",
        "evaluation": {
            "interval": spec.eval_interval,
            "episodes": spec.eval_episodes,
            "steps": evaluation_steps(spec),
            "policy": "as each algorithm's reference evaluates: temperature 0 for BC, IQL and ReBRAC; FQL, IFQL and "
            "IDQL sample, and so does DSRL unless algo_config.deterministic_eval (docs/algorithms.md)",
            "success": "info['success'] at the last step of each episode",
        },
        # When OGBench computes reward and success: 'pre' (before the action, ogbench >= 1.2's single-task default) or
        # 'post' (after it; earlier ogbench). The environment's own value; evaluation envs get the same options.
        "success_timing": effective_timing(task.env),
        "sparse_reward": spec.sparse_reward,
        "reward": reward_rule(task.task, spec.task_options(), effective_timing(task.env)),
        "dataset": task.provenance,
        "algo_config": dataclasses.asdict(config),
        # A preset value that no paper gives (antsoccer's offline row, say): what was used instead. None: sourced.
        "unsourced_preset": unsourced_note(spec.algo, spec.task, spec.setting),
        "versions": {name: version(name) for name in packages},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "git_sha": _git_sha(),
    }


def evaluation_steps(spec: RunSpec) -> list[int]:
    """Global steps at which the run evaluates: every eval_interval, and at the end of each phase."""
    return schedule.evaluation_steps(spec.eval_interval, spec.offline_steps, spec.online_steps)


def _git_sha() -> str | None:
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


class _Loop:
    """State of one run between steps: learner, counters, progress, logging."""

    def __init__(
        self,
        spec: RunSpec,
        config: Any,
        run_dir: RunDirectory,
        task: OfflineTask,
        tracker: MlflowSync,
        progress: bool,
        on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
        external: External | None = None,
    ) -> None:
        self.spec, self.config, self.run_dir, self.task, self.tracker = spec, config, run_dir, task, tracker
        self.on_evaluation = on_evaluation
        self.external = external
        self.learner = Learner(spec.algo, config, task.train, spec.seed, spec.chunk_size)
        if spec.online_steps > 0:
            try:
                self.learner.check_chunk_buffer(spec.buffer_size, spec.online_steps)
            except ValueError as exc:
                raise RunSpecError(str(exc)) from None
        source, opened = external if external is not None else (None, None)
        self.evaluator = Evaluator(spec, config, base=source, opened=opened)
        self.step = 0
        self.online_transitions = 0
        self.episode = 0
        self.last_span = 0
        self.last_eval: dict[str, float] = {}
        self.last_sync = time.monotonic()
        total = spec.offline_steps + spec.online_steps
        self.bar = tqdm(total=total, desc=spec.run_id, unit="step", disable=not progress, dynamic_ncols=True)

    # ------------------------------------------------------------------ checkpoints

    def install_base_policy(self, base: FlowBasePolicy) -> None:
        """DSRL's `base_run` (a checkpoint restored afterwards holds the same base)."""
        try:
            self.learner.set_base_policy(base.network, base.params)
        except ValueError as exc:
            raise RunSpecError(f"base_run {base.provenance['run_dir']}: {exc}") from None

    def restore(self, path: Path | None) -> None:
        if path is None:
            return
        meta = checkpoint.read_meta(path)
        if meta["phase"] == "online" or meta["online_transitions"] > 0:
            self.learner.start_online(self.spec.buffer_size, self.spec.utd)
        templates = self.learner.checkpoint_trees(meta["online_transitions"])
        trees, meta = checkpoint.load(path, templates)
        self.learner.restore(trees, meta["online_transitions"])
        self.step, self.online_transitions, self.episode = meta["step"], meta["online_transitions"], meta["episode"]
        self.last_eval = meta.get("last_eval", {})
        self.run_dir.cut_logs(meta["offsets"])
        self.bar.update(self.step)

    def save_checkpoint(self, phase: str) -> None:
        meta = {
            "phase": phase,
            "online_transitions": self.online_transitions,
            "episode": self.episode,
            **self.run_dir.log_state(),
            "last_eval": self.last_eval,
            "run_id": self.spec.run_id,
        }
        checkpoint.save(
            self.run_dir.checkpoints, self.step, self.learner.checkpoint_trees(self.online_transitions), meta
        )
        self.tracker.sync()
        self.last_sync = time.monotonic()

    def save_final_checkpoint(self) -> None:
        """The finished run's state, also when the run ended inside an online episode."""
        last = checkpoint.latest(self.run_dir.checkpoints)
        if last is None or checkpoint.step_of(last) != self.step:
            self.save_checkpoint("final")

    # ------------------------------------------------------------------ offline

    def offline_phase(self) -> None:
        spec = self.spec
        while self.step < spec.offline_steps:
            target = self._next_boundary(self.step, spec.offline_steps)
            self.last_span = target - self.step
            metrics = self.learner.train(target - self.step)
            self.step = target
            self.bar.update(self.last_span)
            self._after_step(metrics, phase="offline")

    def _next_boundary(self, step: int, end: int) -> int:
        spec = self.spec
        candidates = [end]
        for interval in (spec.chunk_size, spec.log_interval, spec.eval_interval, spec.checkpoint_interval):
            candidates.append((step // interval + 1) * interval)
        return min(candidates)

    def _after_step(self, metrics: dict[str, float], phase: str) -> None:
        spec = self.spec
        end = spec.offline_steps if phase == "offline" else spec.offline_steps + spec.online_steps
        if self.step % spec.log_interval == 0 or self.step == end:
            self.run_dir.append_row("train.csv", {"step": self.step, **metrics})
        if schedule.is_evaluation_step(self.step, spec.eval_interval, spec.offline_steps, spec.online_steps):
            self._evaluate()
        if phase == "offline" and (self.step % spec.checkpoint_interval == 0 or self.step == end):
            self.save_checkpoint(phase)
        elif time.monotonic() - self.last_sync > 30:
            self.tracker.sync()
            self.last_sync = time.monotonic()

    def _evaluate(self) -> None:
        if self.spec.eval_episodes == 0:
            return
        seed = _stream_seed(_stream_seed(self.spec.seed, _EVAL_STREAM), self.step)
        results = self.evaluator.evaluate(self.learner.policy_state(), seed)
        self.last_eval = results
        self.run_dir.append_row("eval.csv", {"step": self.step, **results})
        self.bar.set_postfix(success=f"{results['success']:.2f}", refresh=False)
        if self.on_evaluation is not None:
            self.on_evaluation(self.step, results)

    # ------------------------------------------------------------------ online

    def online_phase(self) -> None:
        spec = self.spec
        if spec.online_steps == 0:
            return
        end = spec.offline_steps + spec.online_steps
        if not self.learner.online:  # not restored into the online phase
            self.learner.start_online(spec.buffer_size, spec.utd)
        seed = _stream_seed(spec.seed, _ONLINE_STREAM)
        collector = Collector(self.task.env, spec.algo, self.config, seed, self.external[1] if self.external else None)
        collector.reset(self.episode)
        # A learner's warm-up (DSRL-SAC: base-policy rollouts before any update) depends on the online step
        # alone, so a run resumed from a checkpoint warms up, or not, exactly as the uninterrupted run did.
        warmup = warmup_steps(spec.algo, self.config)
        checkpoint_due = False
        while self.step < end:
            warming_up = self.online_transitions < warmup
            transition, episode_over = collector.step(self.learner.state, self.online_transitions, warming_up)
            self.last_span = 1
            index = self.learner.next_index(self.online_transitions)
            # QC and QAM collect start_training steps before the first online update (docs/chunking.md#steps).
            learning = not warming_up and self.online_transitions >= spec.start_training
            metrics = self.learner.online_step(transition, index, update=learning)
            self.online_transitions += 1
            self.step += 1
            self.bar.update(1)
            checkpoint_due |= self.step % spec.checkpoint_interval == 0
            self._after_step(metrics, phase="online")
            if episode_over:
                self.learner.end_episode()  # e.g. Cal-QL's Monte-Carlo returns of the episode's rows
                self.episode += 1
                collector.reset(self.episode)
                if checkpoint_due or self.step == end:
                    # Only at episode ends: the next episode starts from a seeded reset, so no
                    # simulator state has to be saved for resume to be exact.
                    self.save_checkpoint("online")
                    checkpoint_due = False


def _stream_seed(seed: int, stream: int) -> int:
    """An independent 30-bit seed for one random stream of a run (evaluation, online collection)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] % 2**30)
