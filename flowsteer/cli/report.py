"""``flowsteer report``: run directories to the paper's tables (CSV, LaTeX, Markdown)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from flowsteer.reports.aggregate import Aggregation
from flowsteer.reports.api import write_report
from flowsteer.reports.load import ReportError, ReportWarning
from flowsteer.reports.published import CHOICES
from flowsteer.reports.writers import to_markdown

EXIT_USAGE = 2


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="tables from run directories, as the FQL/OGBench papers make them",
        description="Aggregate run directories as the FQL and OGBench papers do (per run: mean success over "
        "the last k evaluations; per task: mean ± std over seeds; per category: each seed's mean over the "
        "five tasks, then mean ± std; bold at or above 95% of the row's best) and write CSV, LaTeX and "
        "Markdown tables whose captions state the protocol.",
    )
    parser.add_argument(
        "source", help="a run directory, a folder holding run directories, or mlflow:EXPERIMENT (an MLflow experiment)"
    )
    parser.add_argument("--tracking-uri", help="MLflow URI for mlflow:EXPERIMENT (default $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<cwd>/mlflow.db)")  # fmt: skip
    parser.add_argument("--format", type=_names, default=["csv", "latex", "md"], help="csv,latex,md (default all)")
    parser.add_argument("--out", type=Path, help="where the files go (default SOURCE/report)")
    parser.add_argument(
        "--layout", type=_names, default=["task"], help="task, category or published (comma-separated; default task)"
    )
    parser.add_argument("--last-k", type=int, default=3, help="evaluations averaged per run (default 3, OGBench)")
    parser.add_argument("--ddof", type=int, default=0, help="delta degrees of freedom of the std (default 0)")
    parser.add_argument(
        "--stats", action="store_true", help="IQM and mean (bootstrap 95%% CIs), performance profiles, P(X > Y)"
    )
    parser.add_argument("--plots", action="store_true", help="learning curves per category (PNG and PDF)")
    parser.add_argument("--caption", default="", help="text that opens every table's caption (e.g. what a "
                        "reduced protocol reduced)")  # fmt: skip
    parser.add_argument("--published", default="auto", choices=CHOICES,
                        help="the protocol of the published numbers beside yours: fql (FQL and DSRL papers), qc "
                        "(Q-chunking), qam (QAM); auto: fql unless runs act in chunks or learn from sparse rewards "
                        "(default auto)")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help="re-read every run (ignore the Parquet cache)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    mlflow = args.source.startswith("mlflow:")
    out = args.out or (Path("report") if mlflow else Path(args.source) / "report")
    if args.last_k < 1 or args.ddof < 0:
        print("flowsteer: error: --last-k must be at least 1 and --ddof at least 0.", file=sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReportWarning)
            reports, written = write_report(
                args.source,
                out,
                layouts=args.layout,
                formats=args.format,
                agg=Aggregation(last_k=args.last_k, ddof=args.ddof),
                cache=not args.no_cache,
                stats=args.stats,
                plots=args.plots,
                tracking_uri=args.tracking_uri,
                caption=args.caption,
                published=args.published,
            )
    except ReportError as exc:
        print(f"flowsteer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in (w for w in caught if issubclass(w.category, ReportWarning)):
        print(f"flowsteer: warning: {warning.message}", file=sys.stderr)
    for report in reports:
        print(to_markdown(report))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
