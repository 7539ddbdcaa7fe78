"""MLflow as a view of the run directory.

Metrics are first written to train.csv / eval.csv; `MlflowSync` then copies the rows MLflow has not seen
yet (``tracking.json`` counts them). So a tracking server that is down loses nothing: rows wait in the run
directory and go out at the next sync (or with ``flowsteer sync RUN_DIR``). A resumed run reattaches to
its own MLflow run, and rows recomputed after a resume are not sent twice (resume is exact, so they are
the rows MLflow already has).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

from flowsteer.platform.rundir import RunDirectory, read_json, write_json_atomic

_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class TrackingAuthError(Exception):
    """The tracking server refused the credentials (401) or the user's permissions (403)."""


def check_access(uri: str, experiment: str, timeout: float = 10.0) -> str | None:
    """Fail fast on wrong credentials: one request, without retries, to an HTTP(S) tracking server.

    Raises TrackingAuthError on 401/403 (otherwise every run would only warn while it trains). Returns None
    when the server answered, or the reason it could not be reached: callers go on and sync later, as runs do.
    Local stores (sqlite, files) have no authentication and are not probed.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    try:
        # MLflow's own client retries for minutes on a dead server; one try is enough to tell.
        response = http_request(creds, "/api/2.0/mlflow/experiments/get-by-name", "GET", max_retries=0,
                                timeout=timeout, params={"experiment_name": experiment})  # fmt: skip
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code in (401, 403):
        raise TrackingAuthError(auth_error_message(uri, response.status_code, experiment, creds.username))
    return None


def auth_error_message(uri: str, status: int, experiment: str, username: str | None) -> str:
    """What went wrong and what to set; the credentials come from the environment, never from files."""
    user, password = CREDENTIAL_ENV
    if status == 401 and not username:
        why = f"asks for a login and none was given. Set {user} and {password} in the environment"
    elif status == 401:
        why = f"refused the login of user {username!r} (wrong user name or password). Check {user} and {password}"
    else:
        why = (f"denies user {username!r} access to experiment {experiment!r}. Ask an MLflow admin for EDIT "
               f"permission on it, or log to another experiment")  # fmt: skip
    return f"MLflow at {uri} {why} (HTTP {status}); nothing was started."


class MlflowSync:
    """Copies a run directory's metrics into one MLflow run, reattaching to it across restarts."""

    def __init__(self, run_dir: RunDirectory, uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = tags
        self.state_path = run_dir.path / "tracking.json"
        self._client = None
        self._warned = False

    # ------------------------------------------------------------------ public

    def start(self, params: dict[str, Any]) -> str | None:
        """Find or create this directory's MLflow run; returns its id, or None if the server is unreachable
        (then the run is created at the next successful sync)."""
        state = read_json(self.state_path, {})
        if not state.get("mlflow_run_id"):
            pending = {"tracking_uri": self.uri, "experiment": self.experiment, "run_name": self.run_name}
            write_json_atomic(self.state_path, {**pending, "tags": self.tags, "params": params, "sent_rows": {}})
        try:
            return self._start(params)
        except Exception as exc:
            self._warn(exc)
            return None

    def sync(self) -> bool:
        """Send rows MLflow has not received; True when nothing is pending afterwards."""
        try:
            state = read_json(self.state_path, {})
            if not state.get("mlflow_run_id"):
                if "params" not in state:
                    return False
                self.tags = state.get("tags", self.tags)
                self._start(state["params"])
                state = read_json(self.state_path, {})
            client = self._get_client()
            sent = dict(state.get("sent_rows", {}))
            for name in ("train.csv", "eval.csv"):
                rows = self._unsent_rows(name, sent.get(name, 0))
                self._send(client, state["mlflow_run_id"], name, rows)
                sent[name] = sent.get(name, 0) + len(rows)
                write_json_atomic(self.state_path, {**state, "sent_rows": sent})
            return True
        except Exception as exc:
            self._warn(exc)
            return False

    def finish(self, status: str) -> None:
        """Mark the MLflow run FINISHED / FAILED / KILLED after a last sync."""
        self.sync()
        state = read_json(self.state_path, {})
        if not state.get("mlflow_run_id"):
            return
        try:
            self._get_client().set_terminated(state["mlflow_run_id"], status=status)
        except Exception as exc:
            self._warn(exc)

    # ------------------------------------------------------------------ internals

    def _get_client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _start(self, params: dict[str, Any]) -> str:
        client = self._get_client()
        state = read_json(self.state_path, {})
        run_id = state.get("mlflow_run_id")
        if run_id and state.get("tracking_uri") == self.uri:
            client.update_run(run_id, status="RUNNING")
            return run_id
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(self.experiment, artifact_location=self._artifact_location())
        )
        run = client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(flat), 100):
            client.log_batch(run.info.run_id, params=flat[start : start + 100])
        state = {"mlflow_run_id": run.info.run_id, "tracking_uri": self.uri, "experiment": self.experiment}
        write_json_atomic(self.state_path, {**state, "run_name": self.run_name, "sent_rows": {}})
        return run.info.run_id

    def _artifact_location(self) -> str | None:
        """Beside a local sqlite store (MLflow's default is ./mlruns of whatever directory we run in)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        database = Path(self.uri[len("sqlite:///") :])
        return (database.parent / "mlartifacts" / self.experiment).as_uri()

    def _unsent_rows(self, name: str, sent: int) -> list[dict[str, str]]:
        path = self.run_dir.path / name
        if not path.exists():
            return []
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
        return rows[sent:]

    def _send(self, client, run_id: str, name: str, rows: list[dict[str, str]]) -> None:
        from mlflow.entities import Metric

        prefix = "training/" if name == "train.csv" else "evaluation/"
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(f"{prefix}{key}", float(value), timestamp, int(float(row["step"])))
            for row in rows
            for key, value in row.items()
            if key != "step" and value not in ("", "nan")
        ]
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            print(
                f"flowsteer: MLflow at {self.uri} is unavailable ({type(exc).__name__}: {exc}); metrics stay in "
                f"{self.run_dir.path} and are sent later (`flowsteer sync {self.run_dir.path}`).",
                file=sys.stderr,
            )
            self._warned = True
