"""The metric logs of a run (train.csv, eval.csv): append-only CSV that every reader checks the same way.

A row is one line ``step,metric,...`` of numbers, written whole with its newline; the first row fixes the
columns. A resumed run cuts the files back to the sizes its checkpoint recorded, after checking that they still
hold what the run wrote (a hash of that prefix), so a file that was shortened or edited is never padded or
appended to. Readers refuse what flowsteer cannot have written (NUL bytes, rows of the wrong width, values that
are not numbers) and set aside a last line without its newline: a row cut short by a crash or an editor.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from flowsteer.rundir.errors import RunFileError

WALL_TIME = "wall_time"  # seconds since the epoch when a row was written; not a metric (MLflow's timestamp)


@dataclass
class CsvLog:
    """The rows of one log file, as numbers; ``partial`` is a last line left out for lacking its newline."""

    path: Path
    columns: list[str]
    rows: list[dict[str, float]] = field(default_factory=list)
    partial: str | None = None

    @property
    def metrics(self) -> list[str]:
        """Columns that hold measurements (not the step or the wall time)."""
        return [c for c in self.columns if c not in ("step", WALL_TIME)]


def read_log(path: Path) -> CsvLog:
    """Parse ``path``; RunFileError naming the file and the line when it is not a flowsteer log."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunFileError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    if not data.strip():
        raise RunFileError(f"{path} is empty: not even its header survived.")
    if b"\0" in data:
        raise RunFileError(f"{path} is damaged: it holds NUL bytes (binary content, or a file extended past its end).")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is damaged: it is not text (not UTF-8).") from None
    lines = text.split("\n")
    partial = lines.pop() or None  # '' when the file ends with its newline, as flowsteer writes it
    if not lines:
        raise RunFileError(f"{path} is damaged: its header line is incomplete ({partial!r}).")
    columns = next(csv.reader([lines[0]]))
    if "step" not in columns:
        raise RunFileError(f"{path} has no 'step' column (columns {columns}); it was not written by flowsteer.")
    log = CsvLog(path, columns, partial=partial)
    for number, values in enumerate(csv.reader(lines[1:]), start=2):
        if len(values) != len(columns):
            raise RunFileError(f"{path}, line {number}: {len(values)} values for {len(columns)} columns.")
        try:
            log.rows.append({c: float(v) for c, v in zip(columns, values, strict=True)})
        except ValueError:
            bad = next(v for v in values if not _is_number(v))
            raise RunFileError(f"{path}, line {number}: {bad!r} is not a number.") from None
    return log


def measurements(path: Path) -> str:
    """The text of a log without its wall-time column: what two runs of the same computation share byte for byte
    (a resumed run and one never interrupted, say)."""
    lines = path.read_text().splitlines(keepends=True)
    columns = next(csv.reader(lines[:1]))
    if WALL_TIME not in columns:
        return "".join(lines)
    drop = columns.index(WALL_TIME)
    kept = [",".join(v for i, v in enumerate(values) if i != drop) for values in csv.reader(lines)]
    return "".join(f"{line}\n" for line in kept)


def read_columns(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def format_row(columns: list[str], row: dict[str, float], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    # repr keeps every bit of a float, so a resumed run's rows compare equal to an uninterrupted run's.
    writer.writerow([repr(float(row.get(c, math.nan))) for c in columns])
    return buffer.getvalue()


def ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


def prefix_sha256(path: Path, size: int) -> str:
    """sha256 of the first ``size`` bytes of ``path`` (what a checkpoint records of each log)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = size
        while remaining > 0:
            block = handle.read(min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
