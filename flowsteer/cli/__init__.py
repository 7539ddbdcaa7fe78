"""The ``flowsteer`` command: ``flowsteer data|train|sync|sweep|report|base-policy ...``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from flowsteer import __version__
from flowsteer.cli import base_policy, data, report, sweep, train
from flowsteer.datasets.errors import DatasetError
from flowsteer.platform.loop import RunDiverged
from flowsteer.platform.spec import RunSpecError
from flowsteer.platform.tracking import TrackingAuthError
from flowsteer.policies.interface import BasePolicyError
from flowsteer.reports.load import ReportError, ReportWarning
from flowsteer.rundir import RunDirectoryError, RunWarning
from flowsteer.sweeps.spec import SweepSpecError
from flowsteer.trackinguri import CredentialsInUriError, redact
from flowsteer.yamlfile import YamlInputError

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
# Errors that mean "this input cannot be run": one line, exit code 2, nothing started or changed.
USAGE_ERRORS = (
    DatasetError,
    RunSpecError,
    RunDirectoryError,
    SweepSpecError,
    TrackingAuthError,
    CredentialsInUriError,
    YamlInputError,
    ReportError,
    BasePolicyError,
)


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
    base_policy.add_parser(commands)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """flowsteer's own warnings as one line each; everybody else's as Python prints them."""
    if issubclass(category, RunWarning | ReportWarning):
        print(f"flowsteer: warning: {redact(str(message))}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; errors print one clear message, not a traceback."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.run(args) or 0
    except USAGE_ERRORS as exc:
        print(f"flowsteer: error: {redact(str(exc))}", file=sys.stderr)
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
    except OSError as exc:  # a file or directory the command cannot read or write
        where = f" {exc.filename}" if exc.filename else ""
        print(f"flowsteer: error: cannot use{where}: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = _python_show_warning


if __name__ == "__main__":
    sys.exit(main())
