"""Errors that name the problem and the fix; the CLI prints them without a traceback."""

from __future__ import annotations


class DatasetError(Exception):
    """A dataset cannot be found, generated or read; the message says what to do."""


class UnknownNameError(DatasetError, ValueError):
    """A dataset or task name that OGBench does not define."""


class MissingOfficialDataError(DatasetError):
    """A dataset that only the OGBench dataset server has (locomotion) and that is not on disk."""


class CorruptDatasetError(DatasetError):
    """A dataset file that is truncated, corrupted, or lacks the keys and shapes OGBench needs."""


class NotWritableError(DatasetError):
    """A directory flowsteer must write generated data into cannot be written."""
