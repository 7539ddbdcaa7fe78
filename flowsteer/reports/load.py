"""Run directories into one tidy table: one row per (run, evaluation step, metric).

A run directory (written by the run loop) holds config.json, protocol.json, eval.csv and status.json.
This module reads those files only; it never imports the training code. The table is cached as
Parquet next to the runs, keyed by the size and modification time of every file it was built from,
so a changed or added run rebuilds it.
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

RUN_FILES = ("config.json", "protocol.json", "eval.csv")
CACHE_DIR = ".flowsteer-report-cache"
COLUMNS = [
    "run",
    "algorithm",
    "task",
    "dataset",
    "category",
    "default_task",
    "seed",
    "hyperparameters",
    "setting",
    "offline_steps",
    "online_steps",
    "eval_steps",
    "eval_episodes",
    "status",
    "provenance",
    "step",
    "metric",
    "value",
]


class ReportError(ValueError):
    """Results cannot be turned into a report; the message names the runs or files and the fix."""


class ReportWarning(UserWarning):
    """Something was left out of a report; the message says what."""


def find_run_dirs(source: Path) -> list[Path]:
    """Every run directory at or below ``source`` (a directory holding config.json and eval.csv)."""
    source = Path(source)
    if not source.exists():
        raise ReportError(f"{source} does not exist. Pass a run directory or a folder of run directories.")
    if (source / "config.json").exists():
        return [source]
    runs = []
    for folder, subfolders, names in os.walk(source):
        if "config.json" in names:
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
    """What must agree for two runs to share a table cell: data origin, generator, package versions."""
    dataset = protocol.get("dataset") or {}
    versions = protocol.get("versions") or {}
    parts = [f"data={dataset.get('source', 'unknown')}"]
    generator = dataset.get("generator")
    if dataset.get("source") == "generated" and generator:
        gen = {k: generator.get(k) for k in ("episodes", "seed", "episode_steps", "generator_version", "recipe")}
        parts.append("generator=" + json.dumps(gen, sort_keys=True, separators=(",", ":")))
    for package in ("ogbench", "jax"):
        parts.append(f"{package}={versions.get(package, 'unknown')}")
    parts.append(f"success_timing={protocol.get('success_timing', 'unknown')}")
    return " ".join(parts)


def read_run(path: Path) -> pd.DataFrame:
    """One run directory as tidy rows; duplicate (step, metric) rows from resumed runs keep the last."""
    for name in RUN_FILES:
        if not (path / name).exists():
            raise ReportError(
                f"{path} is not a complete run directory: {name} is missing. Remove it from the report's source "
                f"or finish the run (flowsteer train ... --resume)."
            )
    config = json.loads((path / "config.json").read_text())
    protocol = json.loads((path / "protocol.json").read_text())
    status = json.loads((path / "status.json").read_text()) if (path / "status.json").exists() else {}
    spec = config.get("run")
    if not isinstance(spec, dict) or "algo" not in spec or "task" not in spec:
        raise ReportError(f"{path / 'config.json'} has no 'run' section with 'algo' and 'task'; it is not a run.")
    try:
        task = parse_task(spec["task"])
    except UnknownNameError as exc:
        raise ReportError(f"{path}: {exc}") from None
    evaluation = protocol.get("evaluation") or {}
    wide = pd.read_csv(path / "eval.csv")
    if "step" not in wide.columns:
        raise ReportError(f"{path / 'eval.csv'} has no 'step' column; it was not written by flowsteer.")
    tidy = wide.melt(id_vars="step", var_name="metric", value_name="value")
    try:
        tidy["step"] = tidy["step"].astype("int64")
        tidy["value"] = tidy["value"].astype("float64")
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{path / 'eval.csv'} holds a value that is not a number ({exc}).") from None
    tidy = tidy.drop_duplicates(subset=["step", "metric"], keep="last")
    info = {
        "run": config.get("run_id", path.name),
        "algorithm": spec["algo"],
        "task": task.name,
        "dataset": task.dataset.name,
        "category": task.dataset.category,
        "default_task": task.is_default_task,
        "seed": int(spec.get("seed", 0)),
        "hyperparameters": json.dumps(spec.get("hyperparameters") or {}, sort_keys=True),
        "setting": protocol.get("setting", spec.get("setting", "offline")),
        "offline_steps": int(spec.get("offline_steps", 0)),
        "online_steps": int(spec.get("online_steps", 0)),
        "eval_steps": json.dumps(evaluation.get("steps") or sorted(tidy["step"].unique().tolist())),
        "eval_episodes": int(evaluation.get("episodes", spec.get("eval_episodes", 0))),
        "status": status.get("state", "unknown"),
        "provenance": provenance_key(protocol),
    }
    for column, value in info.items():
        tidy[column] = value
    return tidy[COLUMNS]


def _fingerprint(runs: list[Path]) -> str:
    digest = hashlib.sha256()
    for run in runs:
        for name in (*RUN_FILES, "status.json"):
            file = run / name
            stat = file.stat() if file.exists() else None
            digest.update(f"{file}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()[:20]


def _without_evaluations(run: Path) -> bool:
    """A run that stopped (failed, diverged, interrupted) or is running before its first evaluation."""
    if all((run / name).exists() for name in RUN_FILES) or not (run / "status.json").exists():
        return False
    return json.loads((run / "status.json").read_text()).get("state") != "finished"


def load_runs(source: Path, *, cache: bool = True) -> pd.DataFrame:
    """All runs under ``source`` as one tidy table (see COLUMNS), from the Parquet cache when it is current.

    Runs that have not evaluated yet (running, or stopped early) are left out with a warning; their seeds then
    show as missing in the tables. A finished run without its files is an error.
    """
    source = Path(source)
    runs = find_run_dirs(source)
    early = [run for run in runs if _without_evaluations(run)]
    if early:
        names = ", ".join(run.name for run in early[:5]) + (f" and {len(early) - 5} more" if len(early) > 5 else "")
        warnings.warn(f"{len(early)} run(s) without evaluations yet are left out: {names}", ReportWarning, stacklevel=2)
        runs = [run for run in runs if run not in early]
        if not runs:
            raise ReportError(f"No run under {source} has evaluations yet ({len(early)} started).")
    cache_file = None
    if cache:
        base = source if source.is_dir() else source.parent
        cache_file = base / CACHE_DIR / f"runs-{_fingerprint(runs)}.parquet"
        if cache_file.exists():
            return pd.read_parquet(cache_file)
    frames = [read_run(run) for run in runs]
    seen: dict[str, Path] = {}
    for run, frame in zip(runs, frames, strict=True):
        run_id = frame["run"].iat[0] if len(frame) else run.name
        if run_id in seen:
            raise ReportError(
                f"{seen[run_id]} and {run} hold the same run ({run_id}); one is a copy. Report on one of them."
            )
        seen[run_id] = run
    table = pd.concat(frames, ignore_index=True)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(exist_ok=True)
            for old in cache_file.parent.glob("runs-*.parquet"):
                old.unlink()
            table.to_parquet(cache_file, index=False)
        except OSError as exc:  # a read-only results folder still gets its report
            warnings.warn(f"could not write the report cache {cache_file}: {exc}", ReportWarning, stacklevel=2)
    return table
