"""RunDirectory: reading and writing the files of one run, and one owner at a time."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowsteer.rundir.csvlog import (
    WALL_TIME,
    CsvLog,
    ends_with_newline,
    format_row,
    prefix_sha256,
    read_columns,
    read_log,
)
from flowsteer.rundir.errors import RunBusyError, RunDirectoryError, RunFileError
from flowsteer.rundir.jsonfile import read_json, write_json_atomic
from flowsteer.rundir.lock import exclusive

CONFIG, PROTOCOL, STATUS, TRACKING = "config.json", "protocol.json", "status.json", "tracking.json"
TRAIN_LOG, EVAL_LOG = "train.csv", "eval.csv"
LOGS = (TRAIN_LOG, EVAL_LOG)
LOCK = ".lock"


class RunDirectory:
    """The files of one run. Logs are appended row by row and cut back to a checkpoint's recorded state."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"

    # ------------------------------------------------------------------ ownership

    @contextlib.contextmanager
    def owned(self, run_id: str, wait: float = 0.0) -> Iterator[None]:
        """Be the one process writing this directory; a second one gets RunBusyError naming the first."""

        def busy(owner: str) -> RunBusyError:
            return RunBusyError(
                f"run {run_id} is already in use by {owner} ({self.path}); wait for it to end or stop it. A "
                f"second process would write the same files."
            )

        with exclusive(self.path / LOCK, busy, wait):
            yield

    # ------------------------------------------------------------------ JSON files

    def config(self) -> dict[str, Any] | None:
        return read_json(self.path / CONFIG)

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.path / CONFIG, config)

    def protocol(self) -> dict[str, Any] | None:
        return read_json(self.path / PROTOCOL)

    def write_protocol(self, protocol: dict[str, Any]) -> None:
        write_json_atomic(self.path / PROTOCOL, protocol)

    def set_status(self, state: str, **details: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.path / STATUS, {"state": state, "updated": now, **details})

    def status(self) -> dict[str, Any]:
        """status.json ({'state': 'new'} before the first start); RunFileError when it is damaged."""
        status = read_json(self.path / STATUS, {"state": "new"})
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            raise RunFileError(f"{self.path / STATUS} is damaged: it holds no state.")
        return status

    # ------------------------------------------------------------------ metric logs

    def append_row(self, name: str, row: dict[str, float]) -> None:
        """Append one row, stamped with the wall time; the first row fixes the columns (step, then metrics sorted)."""
        path = self.path / name
        exists = path.exists() and path.stat().st_size > 0
        if exists and not ends_with_newline(path):
            raise RunFileError(f"{path} ends in an incomplete row; a row appended now would be garbled.")
        new_columns = ["step", *sorted(k for k in row if k != "step"), WALL_TIME]
        columns = read_columns(path) if exists else new_columns
        missing = set(row) - set(columns)
        if missing:
            raise RunDirectoryError(f"{path}: metrics {sorted(missing)} are not among its columns {columns}")
        with open(path, "a") as handle:
            handle.write(format_row(columns, {**row, WALL_TIME: time.time()}, header=not exists))
            handle.flush()

    def log(self, name: str) -> CsvLog | None:
        """The rows of a log, checked (see flowsteer.rundir.csvlog); None when the run has not written it."""
        path = self.path / name
        return read_log(path) if path.exists() else None

    def rows(self, name: str) -> list[dict[str, float]]:
        log = self.log(name)
        return log.rows if log is not None else []

    def log_state(self) -> dict[str, dict[str, Any]]:
        """Size and sha256 of each log: what a checkpoint records, so that resume can check and cut them."""
        offsets, digests = {}, {}
        for name in LOGS:
            path = self.path / name
            offsets[name] = path.stat().st_size if path.exists() else 0
            digests[name] = prefix_sha256(path, offsets[name]) if offsets[name] else None
        return {"offsets": offsets, "log_sha256": digests}

    def check_logs(self, offsets: dict[str, int], digests: dict[str, str | None] | None, checkpoint: str) -> None:
        """Refuse to resume from ``checkpoint`` when a log no longer starts with the bytes the run had written
        by then (it was shortened, replaced or edited): those rows cannot be recomputed without starting over."""
        fix = f"Restore the file as the run wrote it, or move {self.path} away to start the run over."
        for name in LOGS:
            path = self.path / name
            size = path.stat().st_size if path.exists() else 0
            want = offsets.get(name, 0)
            if size < want:
                raise RunFileError(
                    f"{path} holds {size} bytes, but {want} were written before checkpoint {checkpoint}: it was "
                    f"shortened or replaced. {fix}"
                )
            expected = (digests or {}).get(name)  # checkpoints of older versions recorded sizes only
            if want and expected and prefix_sha256(path, want) != expected:
                raise RunFileError(
                    f"{path} no longer holds the rows written before checkpoint {checkpoint} (it was edited). {fix}"
                )

    def cut_logs(self, offsets: dict[str, int]) -> None:
        """Drop rows written after a checkpoint (resume recomputes them, identically); see check_logs first."""
        for name in LOGS:
            path = self.path / name
            if path.exists() and path.stat().st_size > offsets.get(name, 0):
                with open(path, "r+b") as handle:
                    handle.truncate(offsets.get(name, 0))

    def reset_logs(self) -> None:
        """A run that starts from step 0 writes its logs anew (earlier rows came from the same computation)."""
        for name in LOGS:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path / name)
