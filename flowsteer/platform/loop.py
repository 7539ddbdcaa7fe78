"""Runs: what a run checks and records before and after its phases (flowsteer.platform.phases), for one seed
(`run`) or a group of seeds of one setting trained in one program (`run_group`).

A run owns its directory, checks that the directory holds this run, finds the checkpoint to resume from, loads
the data and any base policy once for all its seeds, writes config.json, protocol.json and status.json, and
tracks itself in MLflow; a seed of a group does all of this in its own directory, as a single run would.
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
from tqdm import tqdm

from flowsteer.algorithms.presets import unsourced_note
from flowsteer.algorithms.registry import get_algorithm
from flowsteer.algorithms.steering import external_base
from flowsteer.algorithms.training import action_chunk
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.datasets import OfflineTask, load_task
from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.options import effective_timing, reward_rule
from flowsteer.platform import checkpoint
from flowsteer.platform.base_policy import FlowBasePolicy, load_base_policy, open_external_base
from flowsteer.platform.evaluation import Evaluator
from flowsteer.platform.phases import EVAL_STREAM, ONLINE_STREAM, EvaluationHook, Phases, SeedRun
from flowsteer.platform.spec import RunSpec, RunSpecError, identity_of, without_neutral
from flowsteer.platform.tracking import MlflowSync, flat_params
from flowsteer.policies.interface import BasePolicy
from flowsteer.policies.serving import BasePolicySource
from flowsteer.rundir import RunDirectory, RunDirectoryError, RunFileError, RunWarning, schedule
from flowsteer.workers.seed_group import make_learners

# An external base policy as a run holds it: the source every acting process opens, and this process's handle.
External = tuple[BasePolicySource, BasePolicy]


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
    message: str = ""  # why it stopped, when it did not finish (a divergence)


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
    after ``lock_wait`` seconds (a sweep's retry waits for a lost node's lock to expire). A run that diverges
    raises RunDiverged.
    """
    hook = None if on_evaluation is None else (lambda _spec, step, results: on_evaluation(step, results))
    (result,) = _run_seeds([spec], resume, progress, hook, lock_wait, skip_diverged=False)
    if result.status == "diverged":
        raise RunDiverged(result.message)
    return result


def run_group(
    specs: list[RunSpec],
    *,
    resume: bool = False,
    progress: bool = True,
    on_evaluation: EvaluationHook | None = None,
    lock_wait: float = 0.0,
) -> list[RunResult]:
    """Train the seeds of ``specs`` (one setting; they differ only in seed) together, in one program vmapped over
    the seeds (flowsteer.workers.seed_group); returns one RunResult per spec, in order.

    Each seed keeps everything a single run has: its run directory and id, logs, evaluations, checkpoints,
    protocol and MLflow run. A seed that diverges stops alone, with status 'diverged' in its result and its
    directory; the others go on. Seeds already finished, or diverged before, are not trained again. Resuming a
    group with the same seeds repeats the uninterrupted group's numbers exactly; ``on_evaluation(spec, step,
    results)`` is called after each evaluation of each seed.
    """
    check_group(specs)
    return _run_seeds(specs, resume, progress, on_evaluation, lock_wait, skip_diverged=True)


def check_group(specs: list[RunSpec]) -> None:
    """RunSpecError unless ``specs`` are seeds of one setting: the same run but for the seed, no seed twice."""
    if not specs:
        raise RunSpecError("a seed group needs at least one run")
    seeds = [spec.seed for spec in specs]
    if len(set(seeds)) != len(seeds):
        raise RunSpecError(f"a seed group lists a seed twice ({seeds}); give each seed once")
    first = specs[0].to_dict() | {"seed": None}
    for spec in specs[1:]:
        other = spec.to_dict() | {"seed": None}
        differing = [key for key in sorted(set(first) | set(other)) if first.get(key) != other.get(key)]
        if differing:
            raise RunSpecError(
                f"the runs of a seed group may differ only in their seed, but seed {spec.seed} differs from seed "
                f"{specs[0].seed} in {', '.join(differing)}: run different settings as separate groups"
            )


def _run_seeds(
    specs: list[RunSpec],
    resume: bool,
    progress: bool,
    on_evaluation: EvaluationHook | None,
    lock_wait: float,
    skip_diverged: bool,
) -> list[RunResult]:
    apply_cpu_tweaks()  # before anything is compiled; once per process
    started = time.perf_counter()
    first = specs[0]
    config = first.algo_config()
    _check_writable(first.run_dir.parent)
    results: list[RunResult | None] = [None] * len(specs)
    members: list[_Member] = []
    with contextlib.ExitStack() as owned:
        for index, spec in enumerate(specs):
            run_dir = RunDirectory(spec.run_dir)
            owned.enter_context(run_dir.owned(spec.run_id, wait=lock_wait))
            record = _record(spec, config)
            _check_same_run(run_dir, record)
            status = _status(run_dir)
            state = status["state"]
            if state == "finished" or (skip_diverged and state == "diverged"):
                message = str(status.get("message", ""))
                last = status.get("last_eval", {})
                results[index] = RunResult(run_dir.path, state, status.get("step", 0), last, 0.0, message)
                continue
            members.append(_Member(index, spec, run_dir, record, _starting_checkpoint(run_dir, resume)))
        if members:
            trained = _train(specs, config, members, progress, on_evaluation)
            seconds = time.perf_counter() - started
            for member, result in zip(members, trained, strict=True):
                results[member.index] = dataclasses.replace(result, seconds=seconds)
    return [result for result in results if result is not None]


@dataclass
class _Member:
    """A seed of the run that still trains: its place in the group, spec, directory, record and checkpoint."""

    index: int
    spec: RunSpec
    run_dir: RunDirectory
    record: dict[str, Any]
    start: Path | None


def _train(
    specs: list[RunSpec],
    config: Any,
    members: list[_Member],
    progress: bool,
    on_evaluation: EvaluationHook | None,
) -> list[RunResult]:
    """Load what the members share (data, base policy) once, then train them; results in the members' order."""
    spec = members[0].spec
    # A base policy file is checked before the data: a bad file fails at once, not after minutes of generation.
    resumed = [m.run_dir for m in members if m.start is not None]
    external = _external_base(spec, config, resumed)
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
    for member in members:
        member.run_dir.write_config(member.record)  # only now: an attempt that failed on its data leaves nothing
    return _execute(specs, config, members, task, base, external, progress, on_evaluation)


def _execute(
    specs: list[RunSpec],
    config: Any,
    members: list[_Member],
    task: OfflineTask,
    base: FlowBasePolicy | None,
    external: External | None,
    progress: bool,
    on_evaluation: EvaluationHook | None,
) -> list[RunResult]:
    """Train the members from their checkpoints (or step 0) to the end; whatever stops them is recorded."""
    seeds: list[SeedRun] = []
    phases: Phases | None = None
    try:
        for member in members:
            seeds.append(_seed_run(member, progress, len(seeds) if len(specs) > 1 else None))
            _start_seed(seeds[-1], member.record, specs, config, task, base, external)  # may fail: then marked
        phases = _phases(specs, config, seeds, task, base, external, on_evaluation)  # may fail: OOM
        with phases.evaluator:
            phases.offline_phase()
            phases.online_phase()
            phases.finish()
    except BaseException as exc:
        state = "failed" if isinstance(exc, Exception) else "interrupted"
        message = f"{type(exc).__name__}: {exc}"[:2000]
        for seed in seeds:
            if seed.diverged is None and not seed.finished:
                seed.run_dir.set_status(state, step=seed.step, message=message)
                seed.tracker.finish("FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    finally:
        if phases is not None:
            phases.close()
        else:
            for seed in seeds:
                seed.bar.close()
        task.env.close()
        _close_external(external)
    return [
        RunResult(s.run_dir.path, "diverged" if s.diverged else "finished", s.step, s.last_eval, 0.0, s.diverged or "")
        for s in seeds
    ]


def _seed_run(member: _Member, progress: bool, position: int | None) -> SeedRun:
    """A member as the phases advance it, with its tracker and progress bar (one line per seed of a group)."""
    spec = member.spec
    tracker = MlflowSync(member.run_dir, spec.resolved_tracking_uri(), spec.experiment, spec.run_id, _tags(spec))
    bar = tqdm(total=spec.offline_steps + spec.online_steps, desc=spec.run_id, unit="step", dynamic_ncols=True,
               disable=not progress, position=position)  # fmt: skip
    return SeedRun(member.index, spec, member.run_dir, tracker, member.start, bar)


def _start_seed(
    seed: SeedRun,
    record: dict[str, Any],
    specs: list[RunSpec],
    config: Any,
    task: OfflineTask,
    base: FlowBasePolicy | None,
    external: External | None,
) -> None:
    """A seed's protocol, MLflow run, logs and status as its training starts (or resumes)."""
    spec, run_dir = seed.spec, seed.run_dir
    facts = protocol(spec, config, task)
    if len(specs) > 1:
        facts["seed_group"] = _group_facts(specs)
    if base is not None:
        facts["base_policy"] = base.provenance | base.info.provenance()
    if external is not None:
        facts["base_policy"] = external[1].info.provenance() | {"serving": spec.base_serving}
    seed.tracker.start(flat_params(json.loads(json.dumps(record, default=str)), facts))
    run_dir.write_protocol(facts)
    if seed.start is None:
        run_dir.reset_logs()  # never append a new run's rows to an earlier attempt's
    run_dir.set_status("running", step=seed.step)


def _phases(
    specs: list[RunSpec],
    config: Any,
    seeds: list[SeedRun],
    task: OfflineTask,
    base: FlowBasePolicy | None,
    external: External | None,
    on_evaluation: EvaluationHook | None,
) -> Phases:
    """The learner program of all ``specs`` (finished seeds keep their row: the program is the group's, whichever
    seeds still train), the shared evaluator, and the phases that drive ``seeds``."""
    spec = seeds[0].spec
    learners = make_learners(spec.algo, config, task.train, [s.seed for s in specs], spec.chunk_size)
    if spec.online_steps > 0:
        try:
            learners.check_chunk_buffer(spec.buffer_size, spec.online_steps)
        except ValueError as exc:
            raise RunSpecError(str(exc)) from None
    if base is not None:
        try:
            learners.set_base_policy(base.network, base.params)
        except ValueError as exc:
            raise RunSpecError(f"base_run {base.provenance['run_dir']}: {exc}") from None
    source, opened = external if external is not None else (None, None)
    evaluator = Evaluator(spec, config, base=source, opened=opened)  # the seed only enters through evaluate()
    return Phases(seeds, learners, config, task, evaluator, on_evaluation, opened)


def _group_facts(specs: list[RunSpec]) -> dict[str, Any]:
    """How a grouped seed was trained: with which seeds, in one vmapped program (docs/seed-groups.md)."""
    return {
        "seeds": [spec.seed for spec in specs],
        "run_ids": [spec.run_id for spec in specs],
        "program": f"jax.vmap over {len(specs)} seeds; equal to the single run's numbers to float rounding",
    }


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


def _external_base(spec: RunSpec, config: Any, resumed: list[RunDirectory]) -> External | None:
    """The base policy file that the learner's config steers outside JAX (DSRL-SAC's `base_policy`), opened and
    checked against the task's shapes (from the catalog, so before any data is read). Resumed runs must steer the
    bytes they started with: the checksum in their protocols."""
    path = external_base(get_algorithm(spec.algo).steering, config)
    if path is None:
        return None
    recorded = {run_dir.path: _recorded_base(run_dir) for run_dir in resumed}
    if len(set(recorded.values())) > 1:
        shown = "; ".join(f"{where}: {sha[:16]}" for where, sha in recorded.items())
        raise RunSpecError(
            f"the seeds of this group steered different base policy files ({shown}); resume each seed on its own "
            "with the file its protocol.json records"
        )
    expected = next(iter(recorded.values()), None)
    family = parse_task(spec.task).dataset.family
    shapes = (family.obs_dim, family.act_dim, action_chunk(config))
    return open_external_base(path, spec.base_device, spec.base_serving, *shapes, expected)


def _recorded_base(resumed: RunDirectory) -> str:
    """The sha256 of the base policy a resumed run steered, from its protocol."""
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
    return str(expected)


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
            "evaluation": f"episode k at step s: reset seed S(S({spec.seed}, {EVAL_STREAM}), s) + k, "
            f"policy noise fold_in(fold_in(PRNGKey(that seed - k), k), t)",
            "online": f"episode e: reset seed T(S({spec.seed}, {ONLINE_STREAM}), e); noise at online step t: "
            f"fold_in(PRNGKey(S({spec.seed}, {ONLINE_STREAM})), t)",
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
