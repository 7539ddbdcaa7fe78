"""An MLflow experiment into the same tidy table as run directories (flowsteer.reports.load.COLUMNS).

MLflow is a view of the runs: it holds each run's tags (algo, task, seed, run_id), its parameters (run.*, data.*,
algo.*, and protocol.*: the versions, commit and data checksums that the provenance key compares) and its metrics
(evaluation/*), but not protocol.json itself. So the evaluation schedule is recomputed from run.eval_interval,
run.offline_steps and run.online_steps with the run loop's own rule (flowsteer.rundir.schedule), after checking
them against the bounds every run has: a run whose parameters no flowsteer run can have is left out with a
warning. Runs logged by flowsteer versions that did not record protocol.* parameters get the provenance
"versions=not-in-mlflow". Prefer the run directories when they are at hand.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.errors import UnknownNameError
from flowsteer.loggers import quiet_library_loggers
from flowsteer.reports.load import COLUMNS, ReportError, ReportWarning, SkippedRun, provenance_key
from flowsteer.reports.variants import variant_name
from flowsteer.rundir import schedule
from flowsteer.trackinguri import redact

PREFIX = "evaluation/"
PROTOCOL_PREFIX = "protocol."


def _refusal(uri: str, experiment: str, exc: Exception) -> str:
    """A clear message for a server that refused us (401/403) or could not be read."""
    code = getattr(exc, "error_code", "")
    if code == "UNAUTHENTICATED":
        return (f"MLflow at {uri} refused the login (HTTP 401). Set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD in the environment to a user of that server.")  # fmt: skip
    if code == "PERMISSION_DENIED":
        return (f"MLflow at {uri} denies this user access to experiment {experiment!r} (HTTP 403). Ask an MLflow "
                f"admin for READ permission on it.")  # fmt: skip
    return redact(f"MLflow at {uri} could not be read: {str(exc)[:300]}")


def load_mlflow(tracking_uri: str, experiment: str, cache_dir: Path | None = None) -> pd.DataFrame:
    """Every flowsteer run of ``experiment`` as a tidy table; cached as Parquet in ``cache_dir`` once all ended."""
    quiet_library_loggers()
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
    frames, skipped = [], []
    for run in runs:
        try:
            frames.append(_run_frame(client, run))
        except SkippedRun as exc:
            skipped.append(str(exc))
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"{len(skipped)} MLflow run(s) left out: {shown}", ReportWarning, stacklevel=2)
    if not frames:
        raise ReportError(f"No run of MLflow experiment {experiment!r} can be reported.")
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table["step"] = table["step"].astype("int64")
    if cache_file is not None and not skipped:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(cache_file, index=False)
    return table


def _float(value: str | None) -> float:
    """An MLflow parameter as a number; 0 when it is absent or no number (a config without the field)."""
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def _int(params: dict[str, str], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except ValueError:
        raise SkippedRun(f"parameter {key}={params[key]!r} is not an integer") from None


def _protocol(params: dict[str, str]) -> dict[str, Any] | None:
    """The protocol.* parameters as the nested dict protocol.json holds (None when the run logged none)."""
    found = {k.removeprefix(PROTOCOL_PREFIX): v for k, v in params.items() if k.startswith(PROTOCOL_PREFIX)}
    if not found:
        return None
    nested: dict[str, Any] = {}
    for key, text in found.items():
        *parents, leaf = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        try:
            target[leaf] = json.loads(text)
        except json.JSONDecodeError:
            target[leaf] = text
    return nested


def _run_frame(client: Any, run: Any) -> pd.DataFrame:
    """One MLflow run as tidy rows (see flowsteer.reports.load.COLUMNS); SkippedRun when it cannot be reported."""
    params, tags = run.data.params, run.data.tags
    name = tags.get("run_id", run.info.run_name)
    try:
        task = parse_task(tags["task"])
        offline, online = _int(params, "run.offline_steps", 0), _int(params, "run.online_steps", 0)
        interval = _int(params, "run.eval_interval", 1)
        if offline > schedule.MAX_UPDATES or online > schedule.MAX_UPDATES or interval < 1:
            raise SkippedRun(f"its parameters (offline_steps {offline:,}, online_steps {online:,}, eval_interval "
                             f"{interval:,}) are beyond what any flowsteer run can have")  # fmt: skip
        steps = schedule.evaluation_steps(interval, offline, online)
    except (KeyError, UnknownNameError, ValueError) as exc:
        raise SkippedRun(f"MLflow run {name}: {exc}") from None
    except SkippedRun as exc:
        raise SkippedRun(f"MLflow run {name}: {exc}") from None
    algo_config = {k.removeprefix("algo."): v for k, v in params.items() if k.startswith("algo.")}
    protocol = _protocol(params)
    action_chunk = _int(params, "run.action_chunk", 1)
    info = {
        "run": name,
        "algorithm": tags["algo"],
        "variant": variant_name(tags["algo"], action_chunk, _float(algo_config.get("bc_alpha"))),
        "task": task.name,
        "dataset": task.dataset.name,
        "category": task.dataset.category,
        "default_task": task.is_default_task,
        "seed": int(tags.get("seed", params.get("run.seed", 0))),
        "hyperparameters": json.dumps(algo_config, sort_keys=True),
        "setting": params.get("run.setting", "offline-to-online" if online else "offline"),
        "offline_steps": offline,
        "online_steps": online,
        "utd": _int(params, "run.utd", 1),
        "buffer_size": _int(params, "run.buffer_size", 0) if online else 0,
        "eval_interval": interval,
        "eval_episodes": _int(params, "run.eval_episodes", 0),
        "action_chunk": action_chunk,
        "sparse_reward": int(params.get("run.sparse_reward", "False") == "True"),
        "eval_steps": json.dumps(steps),
        "status": run.info.status.lower(),
        "provenance": provenance_key(protocol)
        if protocol
        else f"data={params.get('data.source', 'unknown')} versions=not-in-mlflow",
    }
    rows = []
    for metric in run.data.metrics:
        if metric.startswith(PREFIX):
            history = client.get_metric_history(run.info.run_id, metric)
            rows += [(m.timestamp, m.step, metric.removeprefix(PREFIX), m.value) for m in history]
    frame = pd.DataFrame(rows, columns=["timestamp", "step", "metric", "value"]).sort_values("timestamp")
    frame = frame.drop_duplicates(subset=["step", "metric"], keep="last").drop(columns="timestamp")
    for column, value in info.items():
        frame[column] = value
    return frame
