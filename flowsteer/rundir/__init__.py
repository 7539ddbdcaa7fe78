"""The run directory: the files one run writes, and the one set of rules for reading them back.

    <output_dir>/<run_id>/
        config.json      the RunSpec and the resolved algorithm config
        protocol.json    versions, dataset provenance, seeds, evaluation schedule
        train.csv        step, training metrics, wall_time (every log_interval)
        eval.csv         step, evaluation metrics, wall_time (every eval_interval)
        status.json      running | finished | failed | diverged | interrupted, with a message
        tracking.json    the MLflow run this directory feeds, and how many rows it has received
        checkpoints/     see flowsteer.platform.checkpoint
        .lock            held by the one process writing the directory

This package is the bottom layer: the run loop writes through it; sweeps, tracking and reports read through it.
It imports nothing else of flowsteer.
"""

from flowsteer.rundir.csvlog import WALL_TIME, CsvLog, measurements, read_log
from flowsteer.rundir.directory import (
    CONFIG,
    EVAL_LOG,
    LOGS,
    PROTOCOL,
    STATUS,
    TRACKING,
    TRAIN_LOG,
    RunDirectory,
)
from flowsteer.rundir.errors import RunBusyError, RunDirectoryError, RunFileError, RunWarning
from flowsteer.rundir.jsonfile import read_json, write_json_atomic
from flowsteer.rundir.lock import exclusive

__all__ = [
    "CONFIG",
    "EVAL_LOG",
    "LOGS",
    "PROTOCOL",
    "STATUS",
    "TRACKING",
    "TRAIN_LOG",
    "WALL_TIME",
    "CsvLog",
    "RunBusyError",
    "RunDirectory",
    "RunDirectoryError",
    "RunFileError",
    "RunWarning",
    "exclusive",
    "measurements",
    "read_json",
    "read_log",
    "write_json_atomic",
]
