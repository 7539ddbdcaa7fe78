"""``flowsteer sweep FILE``: run a sweep file on Ray Tune (a private local cluster unless --address)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowsteer.sweeps.driver import SweepIncomplete, run_sweep
from flowsteer.sweeps.spec import SweepSpecError, load_sweep, sweep_schema

EXIT_INCOMPLETE = 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run a sweep file: algorithms x tasks x seeds x hyperparameters on Ray Tune",
        description="Run every trial of a sweep file (see examples/) on Ray Tune and end with the paper's "
        "tables. Finished trials are never run again; --resume continues interrupted ones from their last "
        "checkpoints. Without --address the sweep starts its own local Ray cluster and never joins another.",
    )
    parser.add_argument("file", type=Path, nargs="?", metavar="FILE", help="the sweep file (YAML)")
    parser.add_argument(
        "--schema", action="store_true", help="print the sweep file's JSON Schema (for editors) and exit"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    parser.add_argument("--address", help="join an existing Ray cluster (e.g. 10.0.0.5:6379 or auto)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials it would launch, start nothing")
    parser.add_argument("--storage", type=Path, help="override the file's storage folder")
    parser.set_defaults(run=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(sweep_schema(), indent=2))
        return 0
    if args.file is None:
        raise SweepSpecError("give a sweep FILE (see examples/), or --schema for its JSON Schema.")
    spec = load_sweep(args.file, storage=args.storage)
    try:
        outcome = run_sweep(spec, resume=args.resume, address=args.address, dry_run=args.dry_run)
    except SweepIncomplete as exc:
        print(f"flowsteer: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if args.dry_run:
        return 0
    unfinished = {state: n for state, n in outcome.counts.items() if state != "finished"}
    return EXIT_INCOMPLETE if unfinished else 0
