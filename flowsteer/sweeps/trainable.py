"""What runs inside one Ray Tune trial: one seed group (one seed by default), each seed resumed from its run
directory when it has one.

The run directory (on storage every node sees) is each seed's checkpoint: whenever Tune starts a trial, for the
first time, after a failure, or when a sweep is resumed, ``run_group(..., resume=True)`` continues every seed from
its directory's last checkpoint and reattaches to its one MLflow run; seeds that finished or diverged are not run
again. Each start is appended to ``attempts.jsonl`` in every seed's run directory (node, pid, cores, step resumed
from). A trial that reserves whole CPUs runs pinned to cores no other trial on its node holds (see cores.py); a
group's seeds share them, and its GPU share.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import run_group
from flowsteer.platform.spec import RunSpec
from flowsteer.sweeps.cores import pinned_cores
from flowsteer.sweeps.selection import score_trials
from flowsteer.sweeps.spec import SweepSpec
from flowsteer.sweeps.trials import TrialGroup, suggestion_group

ATTEMPTS_FILE = "attempts.jsonl"
# A retried trial may find its run still locked by the attempt on a lost node, until the shared storage's lease
# on that lock expires (NFS: about 90 s); it waits this long before failing.
LOCK_WAIT = 180.0


def group_of(config: dict[str, Any], sweep: SweepSpec, known: dict[str, TrialGroup]) -> TrialGroup:
    """The seed group a Tune config stands for: one of ``known`` by its name (grid stages), or an Optuna
    suggestion (``algo``, ``task``, ``hp``) and the index of its seed group (Repeater's ``__trial_index__``)."""
    if "group" in config:
        return known[config["group"]]
    return suggestion_group(sweep, config["algo"], config["task"], dict(config["hp"]), config.get("__trial_index__", 0))


def run_trial(config: dict[str, Any], sweep: SweepSpec, groups: dict[str, TrialGroup]) -> None:
    """The Tune function trainable. Reports after every evaluation of every seed, and once at the end with the
    group's ``score``."""
    from ray import tune

    group = group_of(config, sweep, groups)
    use_compilation_cache(sweep.directory / "jax-cache")

    def report(spec: RunSpec, step: int, results: dict[str, float]) -> None:
        # 'score' in every result: searchers (Optuna) read the metric from each report.
        tune.report({"step": step, "success": results["success"], "score": 100.0 * results["success"],
                     "seed": spec.seed, "run_id": spec.run_id})  # fmt: skip

    # Pinned before the run first touches JAX, so that XLA sizes its thread pool to the trial's cores.
    with pinned_cores(sweep.resources.cpu) as cores:
        _run_and_report(group, cores, report)


def _run_and_report(
    group: TrialGroup, cores: list[int], report: Callable[[RunSpec, int, dict[str, float]], None]
) -> None:
    from ray import tune

    pending = group.pending()
    waiting = {trial.id for trial in pending}
    for trial in pending:
        _log_attempt(trial.spec, "start", cores)
    # The whole group, finished seeds too: run_group skips them but keeps their place, so the others train in the
    # program of the uninterrupted group (its size sets the rounding) and resume to its numbers exactly.
    specs = [t.spec for t in group.trials]
    try:
        results = run_group(specs, resume=True, progress=False, on_evaluation=report,
                            lock_wait=LOCK_WAIT) if pending else []  # fmt: skip
    except BaseException as exc:
        for trial in pending:  # a seed may have finished before another one failed
            _log_attempt(trial.spec, "finished" if trial.status() == "finished" else f"error: {type(exc).__name__}")
        raise
    for trial, result in zip(group.trials, results, strict=False):
        if trial.id in waiting:
            _log_attempt(trial.spec, result.status)  # finished, or diverged (deterministic: not retried)
    tune.report(group_result(group))


def group_result(group: TrialGroup) -> dict[str, Any]:
    """The trial's last report: ``score`` is the mean of its seeds' scores (each its report cell's, from its run
    directory). A diverged seed scores NaN, as an ungrouped diverged trial does, and the mean is over the seeds
    with a score (NaN if none): Optuna's Repeater averages a suggestion's groups the same way, so it sees the mean
    over seeds whenever its groups have as many scored seeds. ``state`` is 'diverged' when every seed diverged."""
    scores = [s for s in score_trials(list(group.trials)).values() if not math.isnan(s)]
    states = [t.status() for t in group.trials]
    diverged = states.count("diverged")
    return {
        "score": statistics.fmean(scores) if scores else math.nan,
        "state": "diverged" if diverged == len(states) else "finished",
        "seeds": len(states),
        "diverged": diverged,
    }


def use_compilation_cache(directory: Path) -> None:
    """Share compiled programs between the trials of a sweep: seeds of one setting compile the same program, and
    on the shared sweep storage every node reuses it (compilation is seconds per trial; see bench_sweeps).
    A cache the user set up with JAX_COMPILATION_CACHE_DIR (one shared by several sweeps, or by a test session)
    is kept as it is, with its own settings."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _log_attempt(spec: RunSpec, event: str, cores: list[int] | None = None) -> None:
    last = checkpoint.latest(spec.run_dir / "checkpoints")
    record = {
        "time": time.time(),
        "event": event,
        "host": socket.gethostname(),
        "node": _node_id(),
        "pid": os.getpid(),
        "cores": cores or [],
        "checkpoint_step": checkpoint.step_of(last) if last else 0,
    }
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    with open(spec.run_dir / ATTEMPTS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / ATTEMPTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None
