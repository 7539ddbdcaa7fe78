"""Run a sweep on Ray Tune: checks cheapest first, then the mode's stages on the cluster, then summary and report.

The sweep directory (``storage/<name>/``) holds everything:

    runs/<run_id>/     one run directory per trial (the source of truth; also its checkpoint)
    tune/<stage>/      Ray Tune's experiment state (needed to resume an Optuna search; a failed trial's
                       traceback in <run_id>/error.txt)
    selection.json     tune-then-broadcast: the setting chosen per (algorithm, dataset), with the scores
    summary.csv        one row per trial: state, score, attempts, where its results (and its error) are
    report/            the paper's tables (and report/tuning/ with every tried setting)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowsteer.loggers import quiet_library_loggers
from flowsteer.platform.base_policy import check_external_bases
from flowsteer.rundir import RunDirectoryError, write_json_atomic
from flowsteer.sweeps import cluster, data, selection, summary
from flowsteer.sweeps.modes import SweepIncomplete, SweepMode, mode_of
from flowsteer.sweeps.spec import SweepSpec, SweepSpecError
from flowsteer.sweeps.trials import Trial, grid_trials
from flowsteer.trackinguri import redact

Writer = Callable[[str], None]


@dataclass
class SweepOutcome:
    directory: Path
    trials: list[Trial] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    report_files: list[Path] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    cluster: cluster.ClusterInfo | None = None

    @property
    def counts(self) -> dict[str, int]:
        if self.summary is None or self.summary.empty:
            return {}
        return self.summary["state"].value_counts().to_dict()


def run_sweep(
    spec: SweepSpec, *, resume: bool = False, address: str | None = None, dry_run: bool = False, write: Writer = print
) -> SweepOutcome:
    """Run (or resume, or only print) a sweep; returns where everything is and what each trial ended with.

    Checks run cheapest first and before any work: the file (already validated), every dataset's availability
    (no generation yet), the storage, an interrupted sweep without --resume, MLflow access, the checksums of the
    copies on disk, then the cluster's resources; only then are missing datasets generated and trials launched.
    """
    mode = mode_of(spec)
    plans, missing = data.plan_datasets(spec)
    if dry_run:
        summary.print_plan(spec, mode, plans, missing, write)
        data.refuse_missing(missing)
        return SweepOutcome(spec.directory)
    data.refuse_missing(missing)
    check_external_bases(t.spec for t in grid_trials(spec))  # a bad base_policy file fails before any work
    outcome = SweepOutcome(spec.directory)
    _check_storage(spec)
    with cluster.sweep_lock(spec.directory):
        write_json_atomic(spec.directory / "sweep.json", _spec_record(spec))
        if not resume:
            _refuse_interrupted(spec, mode)
        _create_experiment(spec)  # wrong credentials fail before minutes of dataset generation
        if mode.all_done():
            write(f"{spec.mode}: all {len(mode.trials)} trial(s) are done already; nothing to launch")
        else:
            data.check_copies(spec, plans, write)
            try:
                with cluster.connect(spec, address) as info:  # checks that the cluster can host a trial, before data
                    outcome.cluster = info
                    write(_cluster_line(info))
                    data.generate_missing(spec, plans, write)
                    mode.launch(resume, write)
            except SweepIncomplete:  # the trials so far are still summarized for the user to look at
                summary.write_summary(spec, mode.trials, selection.score_trials(mode.trials))
                raise
        outcome.trials, outcome.selection = mode.trials, mode.selection
        scores = selection.score_trials(outcome.trials)
        outcome.summary = summary.write_summary(spec, outcome.trials, scores)
        outcome.report_files = summary.write_sweep_report(
            spec, outcome.summary, mode.final_runs(scores), mode.tuning_runs(), write
        )
    summary.print_summary(spec, outcome.trials, scores, outcome.summary, outcome.report_files, write)
    return outcome


def _refuse_interrupted(spec: SweepSpec, mode: SweepMode) -> None:
    """Without --resume, an interrupted sweep is not silently continued (mirrors `flowsteer train`)."""
    stale = mode.unfinished()
    if stale:
        raise RunDirectoryError(
            f"sweep {spec.name} was interrupted: {len(stale)} trial(s) or searches are unfinished (stopped or failed) "
            f"({', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}). Continue with --resume (each from its "
            f"last checkpoint), or delete {spec.directory} to start over."
        )


def _check_storage(spec: SweepSpec) -> None:
    try:
        spec.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepSpecError(
            f"cannot create the sweep directory {spec.directory} ({exc.strerror or exc}); choose a writable "
            f"storage (the file's storage: or --storage)."
        ) from None
    if not os.access(spec.directory, os.W_OK | os.X_OK):
        raise SweepSpecError(f"cannot write to {spec.directory} (permission denied); choose a writable storage.")


def _create_experiment(spec: SweepSpec) -> None:
    """Create the MLflow experiment once here: trials creating it at the same moment would race.
    Wrong credentials fail here, before any trial (TrackingAuthError); an unreachable server only warns."""
    quiet_library_loggers()
    from mlflow.tracking import MlflowClient

    from flowsteer.platform.tracking import check_access

    unreachable = check_access(spec.tracking_uri, spec.name)
    if unreachable:  # skip MLflow's own minutes of retries; runs sync when the server is back
        print(f"flowsteer: warning: MLflow at {spec.tracking_uri} is unreachable ({unreachable}); trials go on and "
              f"keep their metrics in their run directories (flowsteer sync sends them later).",
              file=sys.stderr)  # fmt: skip
        return
    try:
        client = MlflowClient(spec.tracking_uri)
        if client.get_experiment_by_name(spec.name) is None:
            client.create_experiment(spec.name)
    except Exception as exc:  # runs keep their metrics on disk and sync later (flowsteer sync)
        print(f"flowsteer: warning: MLflow at {spec.tracking_uri} is unreachable ({redact(str(exc))[:300]}); "
              f"trials keep their metrics in their run directories.", file=sys.stderr)  # fmt: skip


def _cluster_line(info: cluster.ClusterInfo) -> str:
    where = "private local cluster" if info.address == "local" else f"cluster at {info.address}"
    cleaned = f"; stopped {len(info.cleaned)} process(es) left by a killed driver" if info.cleaned else ""
    return f"Ray: {where}, {info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs{cleaned}"


def _spec_record(spec: SweepSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
