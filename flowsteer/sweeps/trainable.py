"""What runs inside one Ray Tune trial: one flowsteer run, resumed from its run directory when it has one.

The run directory (on storage every node sees) is the trial's checkpoint: whenever Tune starts a trial, for
the first time, after a failure, or when a sweep is resumed, ``run(..., resume=True)`` continues from the
directory's last checkpoint, skips the run if it has finished, and reattaches to the run's one MLflow run.
Each start is appended to ``attempts.jsonl`` in the run directory (node, pid, cores, step resumed from).
A trial that reserves whole CPUs runs pinned to cores no other trial on its node holds (see cores.py).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowsteer.platform import checkpoint
from flowsteer.platform.loop import RunDiverged, run
from flowsteer.platform.spec import RunSpec
from flowsteer.reports.aggregate import score_run
from flowsteer.sweeps.cores import pinned_cores
from flowsteer.sweeps.spec import SweepSpec
from flowsteer.sweeps.trials import Trial, suggestion_trial

ATTEMPTS_FILE = "attempts.jsonl"
# A retried trial may find its run still locked by the attempt on a lost node, until the shared storage's lease
# on that lock expires (NFS: about 90 s); it waits this long before failing.
LOCK_WAIT = 180.0


def trial_of(config: dict[str, Any], sweep: SweepSpec, known: dict[str, Trial]) -> Trial:
    """The Trial a Tune config stands for: one of ``known`` by its run id (grid stages), or an Optuna suggestion
    (``algo``, ``task``, ``hp``) and the index of its seed."""
    if "run_id" in config:
        return known[config["run_id"]]
    return suggestion_trial(sweep, config["algo"], config["task"], dict(config["hp"]), config.get("__trial_index__", 0))


def run_trial(config: dict[str, Any], sweep: SweepSpec, trials: dict[str, Trial]) -> None:
    """The Tune function trainable. Reports after every evaluation and once at the end (with ``score``)."""
    from ray import tune

    spec = trial_of(config, sweep, trials).spec
    use_compilation_cache(sweep.directory / "jax-cache")

    def report(step: int, results: dict[str, float]) -> None:
        # 'score' in every result: searchers (Optuna) read the metric from each report.
        tune.report({"step": step, "success": results["success"], "score": 100.0 * results["success"]})

    # Pinned before the run first touches JAX, so that XLA sizes its thread pool to the trial's cores.
    with pinned_cores(sweep.resources.cpu) as cores:
        _run_and_report(spec, cores, report)


def _run_and_report(spec: RunSpec, cores: list[int], report: Callable[[int, dict[str, float]], None]) -> None:
    from ray import tune

    _log_attempt(spec, "start", cores)
    try:
        result = run(spec, resume=True, progress=False, on_evaluation=report, lock_wait=LOCK_WAIT)
    except RunDiverged as exc:
        # Deterministic: a retry would diverge again. Reported as a result, not raised, so Tune does not retry.
        # Its score is NaN, as in its report cell: a searcher counts it as a failed suggestion, not as 0 %.
        _log_attempt(spec, "diverged")
        tune.report({"step": -1, "score": math.nan, "state": "diverged", "message": str(exc)[:500]})
        return
    except BaseException as exc:
        _log_attempt(spec, f"error: {type(exc).__name__}")
        raise
    _log_attempt(spec, "finished")
    score = score_run(result.run_dir)  # the report cell's rule: NaN when the run lacks an evaluation of its window
    tune.report({"step": result.step, "score": score, "state": "finished", "run_dir": str(result.run_dir)})


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
