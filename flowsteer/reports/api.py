"""One call from run directories to report files: what ``flowsteer report`` and the end of a sweep do."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from flowsteer.reports.aggregate import Aggregation, run_scores
from flowsteer.reports.load import CACHE_DIR, ReportError, ReportWarning, load_runs
from flowsteer.reports.mlflow_source import load_mlflow
from flowsteer.reports.plots import plot_learning_curves, plot_performance_profiles
from flowsteer.reports.published import report_protocol, with_column_names
from flowsteer.reports.stats import improvement_estimates, interval_estimates, performance_profiles, score_matrices
from flowsteer.reports.tables import LAYOUTS, Report, build_report
from flowsteer.reports.writers import FORMATS, write
from flowsteer.trackinguri import resolve_tracking_uri

MLFLOW_PREFIX = "mlflow:"


def load_source(source: Path | str, out: Path, *, tracking_uri: str | None = None, cache: bool = True) -> pd.DataFrame:
    """Run directories under ``source``, or the MLflow experiment ``mlflow:NAME`` (at ``tracking_uri``)."""
    text = str(source)
    if text.startswith(MLFLOW_PREFIX):
        uri = resolve_tracking_uri(tracking_uri, Path.cwd())
        return load_mlflow(uri, text.removeprefix(MLFLOW_PREFIX), Path(out) / CACHE_DIR if cache else None)
    return load_runs(Path(source), cache=cache)


def write_report(
    source: Path | str,
    out: Path,
    *,
    layouts: list[str] | tuple[str, ...] = ("task",),
    formats: list[str] | tuple[str, ...] = ("csv", "latex", "md"),
    agg: Aggregation | None = None,
    cache: bool = True,
    stats: bool = False,
    plots: bool = False,
    tracking_uri: str | None = None,
    runs: Collection[str] | None = None,
    caption: str = "",
    published: str = "auto",
) -> tuple[list[Report], list[Path]]:
    """Load the runs of ``source`` (see load_source) and write each layout in each format to ``out``.

    ``stats``: IQM and mean with stratified-bootstrap 95% intervals, performance profiles and probabilities of
    improvement, per setting (stats-<setting>-intervals.csv, -profiles.csv, -improvement.csv).
    ``runs``: report only these run ids (a sweep's selected runs) instead of every run under ``source``.
    ``plots``: learning curves, one figure per category (plots/curves-<category>.png and .pdf), and with
    ``stats`` the performance profiles (plots/profiles-<setting>.png and .pdf).
    ``caption``: text that opens every table's caption, before the protocol written from the runs.
    ``published``: the protocol whose published numbers stand beside the runs' (fql, qc, qam or auto: see
    flowsteer.reports.published); it also names the columns of chunked runs (qc-fql, qc, ...).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"Unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    bad = [layout for layout in layouts if layout not in LAYOUTS]
    if bad:
        raise ReportError(f"Unknown layout(s) {', '.join(bad)}; choose from {', '.join(LAYOUTS)}.")
    tidy = load_source(source, out, tracking_uri=tracking_uri, cache=cache)
    if runs is not None:
        missing = sorted(set(runs) - set(tidy["run"]))
        if missing:  # failed before their first evaluation: the tables flag their seeds as missing
            names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            warnings.warn(f"{len(missing)} selected run(s) have no evaluations: {names}", ReportWarning, stacklevel=2)
        tidy = tidy[tidy["run"].isin(set(runs))].reset_index(drop=True)
    reports, written = [], []
    # Columns named once for every output (build_report names them by the same rule).
    tidy = with_column_names(tidy, report_protocol(tidy, published, warn=False))
    for layout in layouts:
        report = build_report(tidy, layout, agg or Aggregation(), caption, published)
        reports.append(report)
        written += write(report, Path(out), list(formats))
    if stats:
        scores = run_scores(tidy, agg or Aggregation())
        for setting in sorted(scores["setting"].unique()):
            matrices, _ = score_matrices(scores, setting)
            tables = {
                "intervals": interval_estimates(matrices),
                "profiles": performance_profiles(matrices),
                "improvement": improvement_estimates(matrices),
            }
            for name, table in tables.items():
                path = Path(out) / f"stats-{setting}-{name}.csv"
                table.to_csv(path, index=False)
                written.append(path)
            if plots:
                written += plot_performance_profiles(tables["profiles"], Path(out) / "plots", f"profiles-{setting}")
    if plots:
        written += plot_learning_curves(tidy, Path(out) / "plots")
    return reports, written
