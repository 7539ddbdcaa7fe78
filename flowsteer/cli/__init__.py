"""The ``flowsteer`` command: ``flowsteer data|train|sweep|report ...``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flowsteer import __version__
from flowsteer.cli import data, report, sweep, train
from flowsteer.datasets.errors import DatasetError
from flowsteer.platform.loop import RunDiverged
from flowsteer.platform.rundir import RunDirectoryError
from flowsteer.platform.spec import RunSpecError
from flowsteer.platform.tracking import TrackingAuthError
from flowsteer.sweeps.spec import SweepSpecError

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsteer",
        description="Offline and offline-to-online RL with generative policies on OGBench.",
    )
    parser.add_argument("--version", action="version", version=f"flowsteer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data.add_parser(commands)
    train.add_parser(commands)
    sweep.add_parser(commands)
    report.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; errors print one clear message, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (DatasetError, RunSpecError, RunDirectoryError, SweepSpecError, TrackingAuthError) as exc:
        print(f"flowsteer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunDiverged as exc:
        print(f"flowsteer: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("flowsteer: interrupted; nothing partial was kept.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
