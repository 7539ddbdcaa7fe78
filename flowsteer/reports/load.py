"""Run directories into one tidy table: one row per (run, evaluation step, metric).

A run directory (written by the run loop) holds config.json, protocol.json, eval.csv and status.json.
This module reads those files through flowsteer.rundir, the same readers the run loop uses; it never imports
the training code. A run directory that cannot be read (a damaged file, a run stopped before its first
evaluation, a run trained without evaluations) is left out with a ReportWarning that says why: one broken
run never stops a report. The table is cached as Parquet next to the runs, keyed by the size and modification
time of every file it was built from, so a changed or added run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.errors import UnknownNameError
from flowsteer.reports.variants import variant_name
from flowsteer.rundir import CONFIG, EVAL_LOG, PROTOCOL, STATUS, RunFileError, read_json, read_log

RUN_FILES = (CONFIG, PROTOCOL, EVAL_LOG)
CACHE_DIR = ".flowsteer-report-cache"
# Settings that change what a run measures: runs that differ in them are different columns (see method_labels).
PROTOCOL_SETTINGS = (
    "offline_steps",
    "online_steps",
    "utd",
    "buffer_size",
    "eval_interval",
    "eval_episodes",
    "action_chunk",
    "sparse_reward",
)
COLUMNS = [
    "run",
    "algorithm",
    "variant",  # the column QC's names give a chunked run (flowsteer.reports.variants)
    "task",
    "dataset",
    "category",
    "default_task",
    "seed",
    "hyperparameters",
    "setting",
    *PROTOCOL_SETTINGS,
    "eval_steps",
    "status",
    "provenance",
    "step",
    "metric",
    "value",
]
# Package versions that can change a number; a cell never mixes runs that differ in one of them.
_VERSIONED = ("flowsteer", "jax", "jaxlib", "flax", "optax", "numpy", "ogbench", "mujoco", "gymnasium")


class ReportError(ValueError):
    """Results cannot be turned into a report; the message names the runs or files and the fix."""


class ReportWarning(UserWarning):
    """Something was left out of a report; the message says what."""


class SkippedRun(Exception):
    """A run directory left out of a report; the message says why."""


def find_run_dirs(source: Path) -> list[Path]:
    """Every run directory at or below ``source`` (a directory holding config.json)."""
    source = Path(source)
    if not source.exists():
        raise ReportError(f"{source} does not exist. Pass a run directory or a folder of run directories.")
    if (source / CONFIG).exists():
        return [source]
    runs = []
    for folder, subfolders, names in os.walk(source):
        if CONFIG in names:
            runs.append(Path(folder))
            subfolders.clear()  # a run's own folders (checkpoints/) hold no runs
        subfolders[:] = [d for d in subfolders if d != CACHE_DIR]
    runs.sort()
    if not runs:
        raise ReportError(
            f"No runs found under {source}: no directory below it holds a config.json. Point the report at the "
            f"output_dir of a sweep or of `flowsteer train` (default ./runs)."
        )
    return runs


def provenance_key(protocol: dict[str, Any]) -> str:
    """What must agree for two runs to share a table cell: the data (origin, generator, file checksums), the
    code (flowsteer version and commit, versions of the packages that compute), how success is read, the reward
    (sparse or OGBench's own), and the base policy a DSRL run steered."""
    dataset = protocol.get("dataset") or {}
    versions = protocol.get("versions") or {}
    parts = [f"data={dataset.get('source', 'unknown')}"]
    generator = dataset.get("generator")
    if dataset.get("source") == "generated" and generator:
        gen = {k: generator.get(k) for k in ("episodes", "seed", "episode_steps", "generator_version", "recipe")}
        parts.append("generator=" + json.dumps(gen, sort_keys=True, separators=(",", ":")))
    files = dataset.get("files") or {}
    digest = (files.get("train") or {}).get("sha256") if isinstance(files, dict) else None
    if digest:
        parts.append(f"train_sha256={digest[:16]}")
    for package in _VERSIONED:
        if package in versions or package in ("ogbench", "jax"):
            parts.append(f"{package}={versions.get(package, 'unknown')}")
    if "git_sha" in protocol:
        parts.append(f"commit={(protocol['git_sha'] or 'unknown')[:12]}")
    parts.append(f"success_timing={protocol.get('success_timing', 'unknown')}")
    if protocol.get("sparse_reward"):  # QC/QAM's success - 1 reward: other numbers than OGBench's own reward
        parts.append("reward=sparse")
    base = protocol.get("base_policy") or {}  # DSRL: the policy steered, by its bytes (a file, or a base run's)
    digest = base.get("sha256") or base.get("arrays_sha256")
    if digest:
        parts.append(f"base_policy={digest[:16]}")
    return " ".join(parts)


def _read(path: Path, name: str) -> Any:
    try:
        return read_json(path / name)
    except RunFileError as exc:
        raise SkippedRun(str(exc)) from None


def read_run(path: Path) -> pd.DataFrame:
    """One run directory as tidy rows; SkippedRun (with the reason) when it cannot be part of a report."""
    config, protocol = _read(path, CONFIG), _read(path, PROTOCOL)
    status = _read(path, STATUS) or {}
    spec = config.get("run") if isinstance(config, dict) else None
    if not isinstance(spec, dict) or "algo" not in spec or "task" not in spec:
        raise SkippedRun(f"{path / CONFIG} has no 'run' section with 'algo' and 'task'; it is not a run.")
    state = status.get("state", "unknown") if isinstance(status, dict) else "unknown"
    if protocol is None or not (path / EVAL_LOG).exists():
        if state == "finished" and spec.get("eval_episodes") == 0:
            raise SkippedRun(f"{path} was trained without evaluations (eval_episodes 0): it has no score.")
        if state == "finished":
            missing = PROTOCOL if protocol is None else EVAL_LOG
            raise SkippedRun(f"{path} is finished but its {missing} is missing; restore it from a copy.")
        raise SkippedRun(f"{path} has no evaluations yet ({state}).")
    try:
        task = parse_task(spec["task"])
        log = read_log(path / EVAL_LOG)
    except (UnknownNameError, RunFileError) as exc:
        raise SkippedRun(str(exc)) from None
    if log.partial is not None:
        warnings.warn(
            f"{log.path} ends in an incomplete row without its newline ({log.partial[:60]!r}); that row is left "
            f"out (cut short by a crash or an editor?).",
            ReportWarning,
            stacklevel=3,
        )
    evaluation = protocol.get("evaluation") or {}
    metrics = log.metrics
    steps = [int(row["step"]) for row in log.rows]
    tidy = pd.DataFrame(
        {
            "step": [s for s in steps for _ in metrics],
            "metric": metrics * len(steps),
            "value": [row[m] for row in log.rows for m in metrics],
        }
    )
    tidy = tidy.drop_duplicates(subset=["step", "metric"], keep="last")
    hyperparameters = spec.get("hyperparameters") or {}
    action_chunk = int(spec.get("action_chunk", 1))
    resolved = config.get("algo_config") or protocol.get("algo_config") or {}
    bc_alpha = float(hyperparameters.get("bc_alpha", resolved.get("bc_alpha", 0.0)) or 0.0)
    info = {
        "run": config.get("run_id", path.name),
        "algorithm": spec["algo"],
        "variant": variant_name(spec["algo"], action_chunk, bc_alpha),
        "task": task.name,
        "dataset": task.dataset.name,
        "category": task.dataset.category,
        "default_task": task.is_default_task,
        "seed": int(spec.get("seed", 0)),
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "setting": protocol.get("setting", spec.get("setting", "offline")),
        "offline_steps": int(spec.get("offline_steps", 0)),
        "online_steps": int(spec.get("online_steps", 0)),
        "utd": int(spec.get("utd", 1)),
        "buffer_size": int(spec.get("buffer_size", 0)) if spec.get("online_steps") else 0,
        "eval_interval": int(evaluation.get("interval", spec.get("eval_interval", 0))),
        "eval_episodes": int(evaluation.get("episodes", spec.get("eval_episodes", 0))),
        "action_chunk": action_chunk,
        "sparse_reward": int(bool(spec.get("sparse_reward", False))),
        "eval_steps": json.dumps(evaluation.get("steps") or sorted(set(steps))),
        "status": state,
        "provenance": provenance_key(protocol),
    }
    for column, value in info.items():
        tidy[column] = value
    return tidy[COLUMNS]


def _fingerprint(runs: list[Path]) -> str:
    digest = hashlib.sha256(",".join(COLUMNS).encode())  # a table of other columns is not this code's cache
    for run in runs:
        for name in (*RUN_FILES, STATUS):
            file = run / name
            stat = file.stat() if file.exists() else None
            digest.update(f"{file}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()[:20]


def _summarize(reasons: list[str], limit: int = 5) -> str:
    shown = "; ".join(reasons[:limit])
    return shown + (f"; and {len(reasons) - limit} more" if len(reasons) > limit else "")


def load_runs(source: Path, *, cache: bool = True) -> pd.DataFrame:
    """All runs under ``source`` as one tidy table (see COLUMNS), from the Parquet cache when it is current.

    Runs that cannot be reported (no evaluations yet, trained without evaluations, damaged files) are left out
    with a ReportWarning naming each and why; their seeds then show as missing in the tables. ReportError when
    no run is left.
    """
    source = Path(source)
    runs = find_run_dirs(source)
    cache_file = None
    if cache:
        base = source if source.is_dir() else source.parent
        cache_file = base / CACHE_DIR / f"runs-{_fingerprint(runs)}.parquet"
        if cache_file.exists():
            return pd.read_parquet(cache_file)
    frames, kept, skipped = [], [], []
    with warnings.catch_warnings(record=True) as noted:
        warnings.simplefilter("always", ReportWarning)
        for run in runs:
            try:
                frames.append(read_run(run))
                kept.append(run)
            except SkippedRun as exc:
                skipped.append(str(exc))
    for note in noted:  # again, outside the recorder, for the caller to see
        warnings.warn(note.message, note.category, stacklevel=2)
    if skipped:
        warnings.warn(f"{len(skipped)} run(s) left out: {_summarize(skipped)}", ReportWarning, stacklevel=2)
    if not frames:
        raise ReportError(f"No run under {source} can be reported: {_summarize(skipped)}")
    seen: dict[str, Path] = {}
    for run, frame in zip(kept, frames, strict=True):
        run_id = frame["run"].iat[0] if len(frame) else run.name
        if run_id in seen:
            raise ReportError(
                f"{seen[run_id]} and {run} hold the same run ({run_id}); one is a copy. Report on one of them."
            )
        seen[run_id] = run
    table = pd.concat(frames, ignore_index=True)
    if cache_file is not None and not skipped and not noted:  # so that every later report warns again
        try:
            cache_file.parent.mkdir(exist_ok=True)
            for old in cache_file.parent.glob("runs-*.parquet"):
                old.unlink()
            table.to_parquet(cache_file, index=False)
        except OSError as exc:  # a read-only results folder still gets its report
            warnings.warn(f"could not write the report cache {cache_file}: {exc}", ReportWarning, stacklevel=2)
    return table
