"""MLflow as a view of the run directory.

Metrics are first written to train.csv / eval.csv; `MlflowSync` then copies the rows MLflow has not seen
yet (``tracking.json`` counts them), each stamped with the wall time at which the run wrote it. So a tracking
server that is down loses nothing: rows wait in the run directory and go out at the next sync (or with
``flowsteer sync RUN_DIR``). A resumed run reattaches to its own MLflow run, and rows recomputed after a resume
are not sent twice (resume is exact, so they are the rows MLflow already has).

A server that does not answer costs one fast probe (no retries, a few seconds), not MLflow's own minutes of
retries: the run then trains on at full speed and tries again only after ``RETRY_AFTER`` seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from flowsteer.loggers import quiet_library_loggers
from flowsteer.platform.spec import identity_of
from flowsteer.rundir import (
    CONFIG,
    LOGS,
    TRACKING,
    WALL_TIME,
    RunBusyError,
    RunDirectory,
    RunFileError,
    read_json,
    write_json_atomic,
)
from flowsteer.trackinguri import CREDENTIAL_ENV, redact

_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
PROBE_TIMEOUT = 5.0  # seconds: one request without retries tells whether a server is there
RETRY_AFTER = 600.0  # seconds before a run tries an unreachable server again
# MLflow's client retries a dead server 7 times with backoff (minutes); once a probe has found the server, a
# failure of a real request costs at most this many retries and seconds before the run goes on.
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


class TrackingAuthError(Exception):
    """The tracking server refused the credentials (401) or the user's permissions (403)."""


def check_access(uri: str, experiment: str, timeout: float = PROBE_TIMEOUT) -> str | None:
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
        response = http_request(creds, "/api/2.0/mlflow/experiments/get-by-name", "GET", max_retries=0,
                                timeout=timeout, params={"experiment_name": experiment})  # fmt: skip
    except Exception as exc:
        return redact(f"{type(exc).__name__}: {exc}")
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
    return f"MLflow at {redact(uri)} {why} (HTTP {status}); nothing was started."


def flat_params(record: dict[str, Any], protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """MLflow parameters of a run from its config.json record: run.* (identity fields), data.*, algo.*; and from
    its protocol what a report compares before it puts runs in one cell (protocol.*, values as JSON)."""
    run = record["run"]
    flat = {f"run.{k}": v for k, v in identity_of(run).items() if k not in ("hyperparameters", "data")}
    flat |= {f"data.{k}": v for k, v in (run.get("data") or {}).items()}
    flat |= {f"algo.{k}": v for k, v in (record.get("algo_config") or {}).items()}
    if protocol:
        dataset = protocol.get("dataset") or {}
        train = (dataset.get("files") or {}).get("train") or {}
        provenance = {
            "versions": protocol.get("versions") or {},
            "git_sha": protocol.get("git_sha"),
            "success_timing": protocol.get("success_timing"),
            "sparse_reward": protocol.get("sparse_reward") or None,  # logged only when set: earlier runs' params stay
            "dataset.source": dataset.get("source"),
            "dataset.generator": dataset.get("generator"),
            "dataset.files.train.sha256": train.get("sha256"),
        }
        base = protocol.get("base_policy") or {}  # DSRL: which base was steered (logged only for a steering run)
        provenance |= {f"base_policy.{k}": base.get(k) for k in ("file", "sha256", "framework", "sampler")}
        for key, value in provenance.items():
            if isinstance(value, dict) and key == "versions":
                flat |= {f"protocol.versions.{k}": json.dumps(v) for k, v in value.items()}
            elif value is not None:
                flat[f"protocol.{key}"] = json.dumps(value, sort_keys=True)
    return flat


class MlflowSync:
    """Copies a run directory's metrics into one MLflow run, reattaching to it across restarts."""

    def __init__(self, run_dir: RunDirectory, uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = tags
        self.state_path = run_dir.path / TRACKING
        self.state = self._read_state()  # a damaged tracking.json stops the run here, before any work
        self._client = None
        self._warned = False
        self._down_until = 0.0  # monotonic time before which the server is not tried again
        self._attached = False
        self.last_problem: str | None = None

    # ------------------------------------------------------------------ public

    def start(self, params: dict[str, Any]) -> str | None:
        """Find or create this directory's MLflow run; returns its id, or None if the server is unreachable
        (then the run is created at the next successful sync)."""
        if self.state.get("tracking_uri") != self.uri:  # a first start, or the run now reports elsewhere
            self.state = {"sent_rows": {}}
        self.state |= {"tracking_uri": self.uri, "experiment": self.experiment, "run_name": self.run_name,
                       "tags": self.tags, "params": params}  # fmt: skip
        self.state.setdefault("sent_rows", {})
        self._save()
        if not self._reachable():
            return None
        try:
            return self._attach()
        except Exception as exc:
            self._went_down(exc)
            return None

    def sync(self) -> bool:
        """Send rows MLflow has not received; True when nothing is pending afterwards."""
        if not self._reachable():
            return False
        try:
            client = self._get_client()
            run_id = self._attach()
            sent = dict(self.state.get("sent_rows", {}))
            for name in LOGS:
                rows = self.run_dir.rows(name)[sent.get(name, 0) :]
                self._send(client, run_id, name, rows)
                sent[name] = sent.get(name, 0) + len(rows)
                self.state["sent_rows"] = sent
                self._save()
            return True
        except RunFileError:
            raise
        except Exception as exc:
            self._went_down(exc)
            return False

    def finish(self, status: str) -> None:
        """Mark the MLflow run FINISHED / FAILED / KILLED after a last sync."""
        if not self.sync():
            self._remind()
            return
        try:
            self._get_client().set_terminated(self.state["mlflow_run_id"], status=status)
        except Exception as exc:
            self._went_down(exc)

    # ------------------------------------------------------------------ internals

    def _read_state(self) -> dict[str, Any]:
        try:
            state = read_json(self.state_path, {})
        except RunFileError as exc:
            raise RunFileError(
                f"{exc} It records which MLflow run holds this run's metrics: delete it to send every row to a new "
                f"MLflow run (an earlier one, if any, stays as it is)."
            ) from None
        if not isinstance(state, dict):
            raise RunFileError(f"{self.state_path} is damaged: it holds no mapping. Delete it to start tracking anew.")
        return state

    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def _reachable(self) -> bool:
        """Whether to talk to the server now: not while it is known to be down; else after one fast probe."""
        if time.monotonic() < self._down_until:
            return False
        try:
            problem = check_access(self.uri, self.experiment)
        except TrackingAuthError as exc:
            problem = str(exc)
        if problem:
            self._went_down(problem)
            return False
        return True

    def _get_client(self):
        if self._client is None:
            for key, value in _CLIENT_ENV.items():
                os.environ.setdefault(key, value)
            quiet_library_loggers()
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _attach(self) -> str:
        """The id of this directory's MLflow run, created (with its parameters) on first contact."""
        client = self._get_client()
        run_id = self.state.get("mlflow_run_id")
        if run_id:
            if not self._attached:  # once per process: the run is (again) RUNNING in MLflow
                client.update_run(run_id, status="RUNNING")
                self._attached = True
            return run_id
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(self.experiment, artifact_location=self._artifact_location())
        )
        run = client.create_run(experiment_id, run_name=self.run_name, tags=self.state.get("tags", self.tags))
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:6000]) for k, v in sorted(self.state.get("params", {}).items())]
        for start in range(0, len(flat), 100):
            client.log_batch(run.info.run_id, params=flat[start : start + 100])
        self.state |= {"mlflow_run_id": run.info.run_id, "sent_rows": {}}
        self._save()
        self._attached = True
        return run.info.run_id

    def _artifact_location(self) -> str | None:
        """Beside a local sqlite store (MLflow's default is ./mlruns of whatever directory we run in)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        from pathlib import Path

        database = Path(self.uri[len("sqlite:///") :])
        return (database.parent / "mlartifacts" / self.experiment).as_uri()

    def _send(self, client, run_id: str, name: str, rows: list[dict[str, float]]) -> None:
        from mlflow.entities import Metric

        prefix = "training/" if name == "train.csv" else "evaluation/"
        now = time.time()
        metrics = [
            Metric(f"{prefix}{key}", value, int(1000 * row.get(WALL_TIME, now)), int(row["step"]))
            for row in rows
            for key, value in row.items()
            if key not in ("step", WALL_TIME) and value == value  # NaN: the metric was not computed
        ]
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def _went_down(self, problem: Exception | str) -> None:
        text = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        self.last_problem = redact(" ".join(text.split()))[:300]
        self._down_until = time.monotonic() + RETRY_AFTER
        self._attached = False
        if not self._warned:
            print(
                f"flowsteer: warning: MLflow at {redact(self.uri)} is unavailable ({self.last_problem}); the run goes "
                f"on, its metrics stay in {self.run_dir.path} and are sent later.",
                file=sys.stderr,
            )
            self._warned = True

    def _remind(self) -> None:
        if self._warned:
            print(f"flowsteer: to send the metrics MLflow missed: flowsteer sync {self.run_dir.path}", file=sys.stderr)


@dataclass
class SyncOutcome:
    ok: bool
    message: str


def sync_run(run_dir: RunDirectory, tracking_uri: str | None = None) -> SyncOutcome:
    """`flowsteer sync`: send what MLflow has not received, to the recorded URI or to ``tracking_uri``."""
    try:
        config = read_json(run_dir.path / CONFIG)
        state = read_json(run_dir.path / TRACKING)
    except RunFileError as exc:
        return SyncOutcome(False, str(exc))
    if not isinstance(config, dict) or "run_id" not in config:
        return SyncOutcome(False, "not a flowsteer run directory (no config.json)")
    try:
        with run_dir.owned(config["run_id"]):
            if not isinstance(state, dict):
                state = {}
            uri = tracking_uri or state.get("tracking_uri")
            if not uri:
                return SyncOutcome(False, "the run never recorded an MLflow URI; give one with --tracking-uri")
            experiment = state.get("experiment") or config["run"].get("experiment", "flowsteer")
            tags = state.get("tags") or {"run_id": config["run_id"], "flowsteer": "run"}
            tracker = MlflowSync(run_dir, uri, experiment, config["run_id"], tags)
            tracker.start(state.get("params") or flat_params(config))
            if tracker.sync():
                return SyncOutcome(True, f"in sync with MLflow at {redact(uri)}")
            return SyncOutcome(
                False,
                f"MLflow at {redact(uri)} is unreachable ({tracker.last_problem}); nothing lost. Run flowsteer sync "
                f"again when it is back, or send to another server with --tracking-uri.",
            )
    except RunBusyError as exc:
        return SyncOutcome(False, f"{exc} A running run syncs itself.")
    except RunFileError as exc:
        return SyncOutcome(False, str(exc))
