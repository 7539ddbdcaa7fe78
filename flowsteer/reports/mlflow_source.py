"""An MLflow experiment into the same tidy table as run directories (flowsteer.reports.load.COLUMNS).

MLflow is a view of the runs (DESIGN.md): it holds each run's tags (algo, task, seed, run_id), its parameters
(run.*, data.*, algo.*) and its metrics (evaluation/*), but not protocol.json. So the evaluation schedule is
recomputed from run.eval_interval, run.offline_steps and run.online_steps as the run loop does, and the
provenance is the requested data source only: package versions are not in MLflow, and the key says so.
Prefer the run directories when they are at hand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from flowsteer.datasets.catalog import parse_task
from flowsteer.reports.load import COLUMNS, ReportError

PREFIX = "evaluation/"


def _evaluation_steps(interval: int, offline: int, online: int) -> list[int]:
    total = offline + online
    steps = set(range(interval, total + 1, interval)) | {s for s in (offline, total) if s > 0}
    return sorted(steps)


def _refusal(uri: str, experiment: str, exc: Exception) -> str:
    """A clear message for a server that refused us (401/403) or could not be read."""
    code = getattr(exc, "error_code", "")
    if code == "UNAUTHENTICATED":
        return (f"MLflow at {uri} refused the login (HTTP 401). Set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD in the environment to a user of that server.")  # fmt: skip
    if code == "PERMISSION_DENIED":
        return (f"MLflow at {uri} denies this user access to experiment {experiment!r} (HTTP 403). Ask an MLflow "
                f"admin for READ permission on it.")  # fmt: skip
    return f"MLflow at {uri} could not be read: {str(exc)[:300]}"


def load_mlflow(tracking_uri: str, experiment: str, cache_dir: Path | None = None) -> pd.DataFrame:
    """Every flowsteer run of ``experiment`` as a tidy table; cached as Parquet in ``cache_dir`` once all ended."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient  # slow to import; only this source needs it

    client = MlflowClient(tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ReportError(f"MLflow at {tracking_uri} has no experiment {experiment!r}. Check --tracking-uri.")
        runs = client.search_runs([found.experiment_id], filter_string="tags.flowsteer = 'run'", max_results=50_000)
    except MlflowException as exc:
        raise ReportError(_refusal(tracking_uri, experiment, exc)) from None
    if not runs:
        raise ReportError(f"MLflow experiment {experiment!r} at {tracking_uri} holds no flowsteer runs.")
    ended = all(r.info.status != "RUNNING" for r in runs)
    key = hashlib.sha256(
        json.dumps(sorted((r.info.run_id, r.info.status, r.info.end_time) for r in runs)).encode()
    ).hexdigest()[:20]
    cache_file = cache_dir / f"mlflow-{key}.parquet" if cache_dir is not None and ended else None
    if cache_file is not None and cache_file.exists():
        return pd.read_parquet(cache_file)
    frames = []
    for run in runs:
        params, tags = run.data.params, run.data.tags
        task = parse_task(tags["task"])
        offline, online = int(params.get("run.offline_steps", 0)), int(params.get("run.online_steps", 0))
        steps = _evaluation_steps(int(params.get("run.eval_interval", 1)), offline, online)
        algo_config = {k.removeprefix("algo."): v for k, v in params.items() if k.startswith("algo.")}
        info = {
            "run": tags.get("run_id", run.info.run_name),
            "algorithm": tags["algo"],
            "task": task.name,
            "dataset": task.dataset.name,
            "category": task.dataset.category,
            "default_task": task.is_default_task,
            "seed": int(tags.get("seed", params.get("run.seed", 0))),
            "hyperparameters": json.dumps(algo_config, sort_keys=True),
            "setting": params.get("run.setting", "offline-to-online" if online else "offline"),
            "offline_steps": offline,
            "online_steps": online,
            "eval_steps": json.dumps(steps),
            "eval_episodes": int(params.get("run.eval_episodes", 0)),
            "status": run.info.status.lower(),
            "provenance": f"data={params.get('data.source', 'unknown')} versions=not-in-mlflow",
        }
        rows = []
        for name in run.data.metrics:
            if name.startswith(PREFIX):
                history = client.get_metric_history(run.info.run_id, name)
                rows += [(m.timestamp, m.step, name.removeprefix(PREFIX), m.value) for m in history]
        frame = pd.DataFrame(rows, columns=["timestamp", "step", "metric", "value"]).sort_values("timestamp")
        frame = frame.drop_duplicates(subset=["step", "metric"], keep="last").drop(columns="timestamp")
        for column, value in info.items():
            frame[column] = value
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table["step"] = table["step"].astype("int64")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(cache_file, index=False)
    return table
