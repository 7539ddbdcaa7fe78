"""A first `flowsteer train` prints flowsteer's own output, not the progress notes of the libraries it uses."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.loggers import quiet_library_loggers

pytestmark = pytest.mark.integration  # `flowsteer train` subprocesses on a fresh MLflow store

TASK = "cube-single-play-singletask-task2-v0"
# "2026/01/01 12:00:00 INFO mlflow.store.db.utils: ..." (MLflow's format) or "INFO  [alembic.runtime.migration] ..."
LIBRARY_INFO = re.compile(r"\bINFO\b.*\b(mlflow|alembic)\b")


def test_a_first_run_on_a_new_sqlite_store_prints_no_library_info_lines(tmp_path: Path, smoke_cache: Path) -> None:
    assert not (tmp_path / "mlflow.db").exists()  # the default store is created by this run
    result = subprocess.run(
        [sys.executable, "-m", "flowsteer", "train", "--algo", "bc", "--task", TASK, "--offline-steps", "20",
         "--eval-interval", "20", "--eval-episodes", "0", "--log-interval", "20", "--chunk-size", "20",
         "--hp", "batch_size=32", "--hp", "actor_hidden_dims=[32, 32]", "--source", "generated", "--episodes", "4",
         "--cache-dir", str(smoke_cache), "--quiet"],
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow.db").exists()
    noise = [line for line in result.stderr.splitlines() if LIBRARY_INFO.search(line)]
    assert not noise, f"library INFO lines on stderr:\n{result.stderr}"


def test_library_warnings_stay_visible() -> None:
    quiet_library_loggers()
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING), name
