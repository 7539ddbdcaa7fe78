"""What a sweep tells its user: the dry run's plan, summary.csv, the report, and the console summary at the end
(with the last lines of every failed trial's traceback)."""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from flowsteer.datasets.store import DatasetPlan
from flowsteer.rundir import read_json
from flowsteer.sweeps import selection
from flowsteer.sweeps.modes import SweepMode
from flowsteer.sweeps.spec import SweepSpec
from flowsteer.sweeps.trainable import read_attempts
from flowsteer.sweeps.trials import Trial
from flowsteer.sweeps.tune_runner import error_files, read_error

Writer = Callable[[str], None]
TOP_SETTINGS = 10  # settings shown in the console summary (summary.csv and the report hold them all)


def print_plan(
    spec: SweepSpec, mode: SweepMode, plans: list[DatasetPlan], missing: list[tuple[str, str]], write: Writer
) -> None:
    """What the sweep would launch, with each trial's id and current state, and each dataset's copy (dry run)."""
    unit = f"seed group of up to {spec.seeds_per_trial}" if spec.seeds_per_trial > 1 else "trial"
    write(f"sweep {spec.name} ({spec.mode}): {len(spec.algorithms)} algorithm(s), {len(spec.tasks)} task(s), "
          f"{len(spec.seeds)} seed(s); resources per {unit} {spec.resources.as_ray()}")  # fmt: skip
    write(f"  directory {spec.directory}")
    write(f"  MLflow    {spec.tracking_uri} (experiment {spec.name})")
    for entry in plans:
        write(f"  dataset   {entry.info.name}: {entry.describe()}")
    for name, _ in missing:
        write(f"  dataset   {name}: MISSING (official files not on this machine)")
    mode.plan(write)


def summarize(trials: list[Trial], scores: dict[str, float], errors: dict[str, Path] | None = None) -> pd.DataFrame:
    """One row per trial, from its run directory (the truth, whatever Tune recorded), and Tune's error file for a
    trial that failed."""
    errors = errors or {}
    rows = []
    for trial in trials:
        state = trial.status()
        status = read_json(trial.spec.run_dir / "status.json", {})
        rows.append({
            "run_id": trial.id,
            "stage": trial.stage,
            "algo": trial.spec.algo,
            "task": trial.spec.task,
            "seed": trial.spec.seed,
            "hyperparameters": json.dumps(trial.spec.hyperparameters, sort_keys=True),
            "action_chunk": trial.spec.action_chunk,
            "state": state,
            "step": status.get("step", 0),
            "score": scores.get(trial.id, math.nan),
            "attempts": sum(a["event"] == "start" for a in read_attempts(trial.spec.run_dir)),
            "message": status.get("message", ""),
            "error_file": str(errors[trial.id]) if state != "finished" and trial.id in errors else "",
            "run_dir": str(trial.spec.run_dir),
        })  # fmt: skip
    return pd.DataFrame(rows)


def write_summary(spec: SweepSpec, trials: list[Trial], scores: dict[str, float]) -> pd.DataFrame:
    """summary.csv: the summary of ``trials``, with the error files Tune left for the failed ones."""
    summary = summarize(trials, scores, error_files(spec, trials))
    summary.to_csv(spec.directory / "summary.csv", index=False)
    return summary


def write_sweep_report(
    spec: SweepSpec, summary: pd.DataFrame, final_runs: list[str], tuning_runs: list[str], write: Writer
) -> list[Path]:
    """The paper's tables of the sweep's final runs (with the report's warnings); the tuning runs, if any, get
    their own report beside it."""
    from flowsteer.reports.api import write_report
    from flowsteer.reports.load import ReportError, ReportWarning

    if summary.empty or not (summary["state"] == "finished").any():
        write("no finished trial: no report written")
        return []
    settings = spec.report
    files: list[Path] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReportWarning)
            files += write_report(spec.runs_dir, spec.directory / "report", layouts=settings.layouts,
                                  formats=settings.formats, stats=settings.stats, plots=settings.plots,
                                  runs=set(final_runs), caption=settings.caption,
                                  published=settings.published)[1]  # fmt: skip
            if tuning_runs:
                files += write_report(spec.runs_dir, spec.directory / "report" / "tuning", layouts=["task"],
                                      formats=["csv", "md"], runs=set(tuning_runs),
                                      published=settings.published)[1]  # fmt: skip
    except ReportError as exc:
        write(f"report not written: {exc}")
    for warning in caught:
        if issubclass(warning.category, ReportWarning):
            write(f"report warning: {warning.message}")
    return files


def print_summary(
    spec: SweepSpec,
    trials: list[Trial],
    scores: dict[str, float],
    summary: pd.DataFrame,
    report_files: list[Path],
    write: Writer,
) -> None:
    """Trials per state, the best settings' mean scores over seeds, every unfinished trial (a failed one with
    its exception and the last lines of its traceback), and where everything is."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["state"].value_counts().items()))
    write(f"\nsweep {spec.name}: {len(summary)} trial(s): {counts}")
    done = set(summary.loc[summary["state"] == "finished", "run_id"])  # states read once, by summarize
    finished = [t for t in trials if t.id in done]
    groups = selection.settings(finished, scores, selection.by_algorithm_and_task).values()
    ranked = [setting for group in groups for setting in group]
    if ranked:
        write("mean score (success %, last evaluations) over seeds:")
        for setting in sorted(ranked, key=lambda s: -s.mean if s.scored else math.inf)[:TOP_SETTINGS]:
            spread = statistics.stdev(setting.scored) if len(setting.scored) > 1 else 0.0
            trial = setting.trials[0]
            write(f"  {trial.spec.algo:8s} {trial.spec.task:42s} {setting.mean:6.1f} ± {spread:5.1f} "
                  f"({len(setting.scored)} seeds) {setting.describe()}")  # fmt: skip
    for row in summary[summary["state"] != "finished"].itertuples():
        if row.error_file:
            _print_error(row.run_id, row.state, Path(row.error_file), write)
        else:
            write(f"  not finished: {row.run_id} ({row.state}) {row.message[:200]}")
    write(f"results: {spec.directory}")
    write(f"  runs     {spec.runs_dir}  (one directory per trial)")
    write(f"  summary  {spec.directory / 'summary.csv'}")
    if report_files:
        write(f"  report   {spec.directory / 'report'}  ({len(report_files)} files)")
    write(f"  MLflow   {spec.tracking_uri} (experiment {spec.name})")


def _print_error(run_id: str, state: str, error_file: Path, write: Writer) -> None:
    error = read_error(error_file)
    write(f"  not finished: {run_id} ({state}) {error.exception[0] if error.exception else ''}")
    for line in error.exception[1:]:
        write(f"      {line}")
    if error.frames:
        write("    traceback (innermost frames):")
        for line in error.frames:
            write(f"    {line}")
    write(f"    full traceback: {error_file}")
