"""The run directory: the source of truth for one run.

<output_dir>/<run_id>/
    config.json      the RunSpec and the resolved algorithm config
    protocol.json    versions, dataset provenance, seeds, evaluation schedule
    train.csv        step, training metrics (every log_interval)
    eval.csv         step, evaluation metrics (every eval_interval)
    status.json      running | finished | failed | diverged, with a message
    tracking.json    the MLflow run this directory feeds, and how many rows it has received
    checkpoints/     see flowsteer.platform.checkpoint
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CSV_FILES = ("train.csv", "eval.csv")


class RunDirectoryError(RuntimeError):
    """The run directory holds something that contradicts the run being started."""


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


class RunDirectory:
    """Files of one run; CSV rows are appended and can be cut back to a checkpoint's offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = path / "checkpoints"

    def create(self, config: dict[str, Any]) -> None:
        """Make the directory and write config.json; an existing directory must hold the same config."""
        self.path.mkdir(parents=True, exist_ok=True)
        config_path = self.path / "config.json"
        existing = read_json(config_path)
        normalized = json.loads(json.dumps(config, sort_keys=True, default=str))
        if existing is not None and existing != normalized:
            raise RunDirectoryError(
                f"{self.path} belongs to a run with a different configuration (config.json differs). "
                f"Use another output_dir, or delete that directory to start over."
            )
        if existing is None:
            write_json_atomic(config_path, normalized)

    def write_protocol(self, protocol: dict[str, Any]) -> None:
        write_json_atomic(self.path / "protocol.json", protocol)

    def set_status(self, state: str, **details: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.path / "status.json", {"state": state, "updated": now, **details})

    def status(self) -> dict[str, Any]:
        return read_json(self.path / "status.json", {"state": "new"})

    # ------------------------------------------------------------------ metrics

    def append_row(self, name: str, row: dict[str, float]) -> None:
        """Append one row; the first row fixes the columns (step first, then the metric names sorted)."""
        path = self.path / name
        exists = path.exists() and path.stat().st_size > 0
        columns = self.columns(name) if exists else ["step", *sorted(k for k in row if k != "step")]
        missing = set(row) - set(columns)
        if missing:
            raise RunDirectoryError(f"{path}: metrics {sorted(missing)} are not among its columns {columns}")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not exists:
            writer.writerow(columns)
        writer.writerow([_format(row.get(c, math.nan)) for c in columns])
        with open(path, "a") as handle:
            handle.write(buffer.getvalue())
            handle.flush()

    def columns(self, name: str) -> list[str]:
        with open(self.path / name) as handle:
            return next(csv.reader(handle))

    def rows(self, name: str) -> list[dict[str, float]]:
        path = self.path / name
        if not path.exists():
            return []
        with open(path) as handle:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]

    def offsets(self) -> dict[str, int]:
        """Byte sizes of the CSV files: a checkpoint records them so resume can cut later rows."""
        return {name: (self.path / name).stat().st_size if (self.path / name).exists() else 0 for name in CSV_FILES}

    def truncate(self, offsets: dict[str, int]) -> None:
        """Drop rows written after a checkpoint (they are recomputed, identically, on resume)."""
        for name in CSV_FILES:
            path = self.path / name
            if path.exists():
                with open(path, "r+b") as handle:
                    handle.truncate(offsets.get(name, 0))


def _format(value: float) -> str:
    # repr keeps every bit of a float, so a resumed run's rows compare equal to an uninterrupted run's.
    return repr(float(value))
