"""One call from run directories to report files: what ``flowsteer report`` and the end of a sweep do."""

from __future__ import annotations

from pathlib import Path

from flowsteer.reports.aggregate import Aggregation
from flowsteer.reports.load import ReportError, load_runs
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
) -> tuple[list[Report], list[Path]]:
    """Load the runs under ``source`` and write each layout in each format to ``out``."""
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
    return reports, written
