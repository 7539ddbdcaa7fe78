"""One call from run directories to report files: what ``flowsteer report`` and the end of a sweep do."""

from __future__ import annotations

from pathlib import Path

from flowsteer.reports.aggregate import Aggregation, run_scores
from flowsteer.reports.load import ReportError, load_runs
from flowsteer.reports.plots import plot_learning_curves
from flowsteer.reports.stats import interval_estimates, performance_profiles, score_matrices
from flowsteer.reports.tables import LAYOUTS, Report, build_report
from flowsteer.reports.writers import FORMATS, write


def write_report(
    source: Path,
    out: Path,
    *,
    layouts: list[str] | tuple[str, ...] = ("task",),
    formats: list[str] | tuple[str, ...] = ("csv", "latex", "md"),
    agg: Aggregation | None = None,
    cache: bool = True,
    stats: bool = False,
    plots: bool = False,
) -> tuple[list[Report], list[Path]]:
    """Load the runs under ``source`` and write each layout in each format to ``out``.

    ``stats``: IQM and mean with stratified-bootstrap 95% intervals and performance profiles, per setting
    (stats-<setting>-intervals.csv, stats-<setting>-profiles.csv). ``plots``: learning curves, one figure
    per category (plots/curves-<category>.png and .pdf).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"Unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    bad = [layout for layout in layouts if layout not in LAYOUTS]
    if bad:
        raise ReportError(f"Unknown layout(s) {', '.join(bad)}; choose from {', '.join(LAYOUTS)}.")
    tidy = load_runs(source, cache=cache)
    reports, written = [], []
    for layout in layouts:
        report = build_report(tidy, layout, agg or Aggregation())
        reports.append(report)
        written += write(report, Path(out), list(formats))
    if stats:
        scores = run_scores(tidy, agg or Aggregation())
        for setting in sorted(scores["setting"].unique()):
            matrices, _ = score_matrices(scores, setting)
            for name, table in (
                ("intervals", interval_estimates(matrices)),
                ("profiles", performance_profiles(matrices)),
            ):
                path = Path(out) / f"stats-{setting}-{name}.csv"
                table.to_csv(path, index=False)
                written.append(path)
    if plots:
        written += plot_learning_curves(tidy, Path(out) / "plots")
    return reports, written
