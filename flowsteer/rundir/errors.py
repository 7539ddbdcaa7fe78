"""What can be wrong with a run directory, as exceptions the CLI turns into one line (exit code 2)."""

from __future__ import annotations


class RunDirectoryError(RuntimeError):
    """The run directory holds something that contradicts the run being started; the message says what to do."""


class RunFileError(RunDirectoryError):
    """A file of a run directory cannot be read back (cut short, edited, not text); the message names it."""


class RunBusyError(RunDirectoryError):
    """Another process owns the run directory (it is training, or syncing it to MLflow)."""


class RunWarning(UserWarning):
    """Something about a run the user should know, which did not stop it (an unreadable checkpoint skipped...)."""
