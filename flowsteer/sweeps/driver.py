"""Run a sweep on Ray Tune: plan, datasets, trials, the tune-then-broadcast choice, summary and report.

The sweep directory (``storage/<name>/``) holds everything:

    runs/<run_id>/     one run directory per trial (the source of truth; also its checkpoint)
    tune/<stage>/      Ray Tune's experiment state (needed to resume an Optuna search)
    selection.json     tune-then-broadcast: the setting chosen per (algorithm, dataset), with the scores
    summary.csv        one row per trial: state, score, attempts, where its results are
    report/            the paper's tables (and report/tuning/ with every tried setting)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.errors import MissingOfficialDataError
from flowsteer.datasets.store import DatasetFiles, DatasetPlan, plan, resolve
from flowsteer.platform.spec import DataSpec
from flowsteer.rundir import RunDirectoryError, read_json, write_json_atomic
from flowsteer.sweeps import cluster
from flowsteer.sweeps.spec import SweepSpec, SweepSpecError
from flowsteer.sweeps.trainable import read_attempts, run_trial, trial_of
from flowsteer.sweeps.trials import Trial, broadcast_tasks, broadcast_trials, grid_trials, tuning_tasks
from flowsteer.trackinguri import redact

Writer = Callable[[str], None]
FINAL_STATES = ("finished", "diverged")  # a trial in these states is not started again


@dataclass
class SweepOutcome:
    directory: Path
    trials: list[Trial] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    report_files: list[Path] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    cluster: cluster.ClusterInfo | None = None

    @property
    def counts(self) -> dict[str, int]:
        if self.summary is None or self.summary.empty:
            return {}
        return self.summary["state"].value_counts().to_dict()


def run_sweep(
    spec: SweepSpec, *, resume: bool = False, address: str | None = None, dry_run: bool = False, write: Writer = print
) -> SweepOutcome:
    """Run (or resume, or only print) a sweep; returns where everything is and what each trial ended with.

    Checks run cheapest first and before any work: the file (already validated), every dataset's availability
    (no generation yet), the storage, an interrupted sweep without --resume, MLflow access, the checksums of the
    copies on disk, then the cluster's resources; only then are missing datasets generated and trials launched.
    """
    plans, missing = plan_datasets(spec)
    if dry_run:
        print_plan(spec, plans, missing, write)
        refuse_missing(missing)
        return SweepOutcome(spec.directory)
    refuse_missing(missing)
    outcome = SweepOutcome(spec.directory)
    _check_storage(spec)
    with cluster.sweep_lock(spec.directory):
        write_json_atomic(spec.directory / "sweep.json", _spec_record(spec))
        if not resume:
            _refuse_interrupted(spec)
        _create_experiment(spec)  # wrong credentials fail before minutes of dataset generation
        if spec.mode == "grid":
            outcome.trials = grid_trials(spec)
        if outcome.trials and all(t.status() in FINAL_STATES for t in outcome.trials):
            write(f"grid: all {len(outcome.trials)} trial(s) are done already; nothing to launch")
        else:
            check_copies(spec, plans, write)
            try:
                outcome.cluster = _launch(spec, outcome, resume, address, plans, write)
            except SweepIncomplete:  # the tuning stage's trials are still summarized for the user to look at
                summary = summarize(outcome.trials, score_trials(outcome.trials))
                summary.to_csv(spec.directory / "summary.csv", index=False)
                raise
        scores = score_trials(outcome.trials)
        outcome.summary = summarize(outcome.trials, scores)
        outcome.summary.to_csv(spec.directory / "summary.csv", index=False)
        outcome.report_files = write_sweep_report(spec, outcome, scores, write)
    print_summary(spec, outcome, write)
    return outcome


def _launch(
    spec: SweepSpec,
    outcome: SweepOutcome,
    resume: bool,
    address: str | None,
    plans: list[DatasetPlan],
    write: Writer,
) -> cluster.ClusterInfo:
    """Run the sweep's stages on the cluster; fills outcome.trials (and the selection of a broadcast)."""
    with cluster.connect(spec, address) as info:  # checks that the cluster can host a trial, before any data
        write(_cluster_line(info))
        generate_missing(spec, plans, write)
        if spec.mode == "grid":
            _run_trials(spec, "grid", outcome.trials, write)
        elif spec.mode == "tune-then-broadcast":
            outcome.trials = tuned = grid_trials(spec, "tune", tuning_tasks(spec))
            _run_trials(spec, "tune", tuned, write)
            best, outcome.selection = choose_settings(spec, tuned)
            write_json_atomic(spec.directory / "selection.json", outcome.selection)
            for key, choice in outcome.selection.items():
                write(f"chosen for {key}: {choice['hyperparameters']} (score {choice['score']:.1f})")
            broadcast = broadcast_trials(spec, best)
            _run_trials(spec, "broadcast", broadcast, write)
            outcome.trials = tuned + broadcast
        else:
            outcome.trials = _run_optuna(spec, resume, write)
    return info


# ---------------------------------------------------------------------------------------------- plan


def print_plan(
    spec: SweepSpec, plans: list[DatasetPlan], missing: list[tuple[str, str]], write: Writer = print
) -> None:
    """What the sweep would launch, with each trial's id and current state, and each dataset's copy (dry run)."""
    write(f"sweep {spec.name} ({spec.mode}): {len(spec.algorithms)} algorithm(s), {len(spec.tasks)} task(s), "
          f"{len(spec.seeds)} seed(s); resources per trial {spec.resources.as_ray()}")  # fmt: skip
    write(f"  directory {spec.directory}")
    write(f"  MLflow    {spec.tracking_uri} (experiment {spec.name})")
    for entry in plans:
        write(f"  dataset   {entry.info.name}: {entry.describe()}")
    for name, _ in missing:
        write(f"  dataset   {name}: MISSING (official files not on this machine)")
    if spec.mode == "optuna":
        for algo in spec.algorithms:
            for task in spec.tasks:
                write(f"  optuna {algo.name} on {task}: {spec.optuna.suggestions} suggestions x {len(spec.seeds)} "
                      f"seeds = {spec.optuna.suggestions * len(spec.seeds)} trials; space {algo.search}")  # fmt: skip
        return
    stage = "tune" if spec.mode == "tune-then-broadcast" else "grid"
    trials = grid_trials(spec, stage, tuning_tasks(spec) if stage == "tune" else None)
    states = [t.status() for t in trials]
    write(f"  {len(trials)} {stage} trial(s); {states.count('finished')} finished, "
          f"{sum(s not in ('new', 'finished') for s in states)} to resume, {states.count('new')} new")  # fmt: skip
    for trial, state in zip(trials, states, strict=True):
        hp = json.dumps(trial.spec.hyperparameters, sort_keys=True)
        write(f"  {trial.stage:9s} {trial.id:48s} {state:11s} {hp}")
    if stage == "tune":
        extra = len(broadcast_tasks(spec)) * len(spec.seeds) * len(spec.algorithms)
        write(f"  then the best setting per (algorithm, dataset) on {len(broadcast_tasks(spec))} other task(s) x "
              f"{len(spec.seeds)} seed(s): {extra} broadcast trial(s)")  # fmt: skip


# ---------------------------------------------------------------------------------------------- before launch


def _refuse_interrupted(spec: SweepSpec) -> None:
    """Without --resume, an interrupted sweep is not silently continued (mirrors `flowsteer train`)."""
    if spec.mode == "optuna":
        stale = [p.name for p in (spec.directory / "tune").glob("optuna-*") if not (p / "done.json").exists()]
    else:
        stage = "tune" if spec.mode == "tune-then-broadcast" else "grid"
        trials = grid_trials(spec, stage, tuning_tasks(spec) if stage == "tune" else None)
        if stage == "tune":  # the broadcast stage of an earlier start, from the choice it recorded
            trials += broadcast_trials(spec, recorded_choice(spec))
        stale = [t.id for t in trials if t.status() not in ("new", *FINAL_STATES)]
    if stale:
        raise RunDirectoryError(
            f"sweep {spec.name} was interrupted: {len(stale)} trial(s) or searches are unfinished (stopped or failed) "
            f"({', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}). Continue with --resume (each from its "
            f"last checkpoint), or delete {spec.directory} to start over."
        )


def plan_datasets(spec: SweepSpec) -> tuple[list[DatasetPlan], list[tuple[str, str]]]:
    """Which copy of every dataset the sweep will use, found without generating or hashing anything; and the
    datasets that cannot be had here (official files missing), with the message that says how to get them."""
    data = _data_spec(spec)
    plans, missing = [], []
    for info in spec.datasets():
        try:
            plans.append(plan(info.name, data_dir=data.data_dir, cache_dir=data.cache_dir, source=data.source,
                              episodes=data.episodes, seed=data.seed, episode_steps=data.episode_steps))  # fmt: skip
        except MissingOfficialDataError as exc:
            missing.append((info.name, str(exc)))
    return plans, missing


def refuse_missing(missing: list[tuple[str, str]]) -> None:
    """One error naming every dataset the sweep cannot have, before anything is generated or trained."""
    if len(missing) == 1:
        raise MissingOfficialDataError(missing[0][1])
    if missing:
        names = ", ".join(name for name, _ in missing)
        raise MissingOfficialDataError(f"{len(missing)} datasets of the sweep are not on this machine ({names}); "
                                       f"nothing was started. For the first: {missing[0][1]}")  # fmt: skip


def check_copies(spec: SweepSpec, plans: list[DatasetPlan], write: Writer = print) -> None:
    """Check every copy already on disk by checksum (official files against SHA256SUMS, generated ones against
    their provenance), before the cluster starts: a damaged file stops the sweep before any work."""
    for entry in plans:
        if entry.source != "generate":
            files = _resolve(spec, entry, generate=False)
            write(f"dataset {entry.info.name}: {files.provenance.get('source', '?')} copy in {files.train.parent}")


def generate_missing(spec: SweepSpec, plans: list[DatasetPlan], write: Writer = print) -> None:
    """Generate, once, on the driver, every dataset the sweep needs and the cache lacks (after the cluster check)."""
    for entry in plans:
        if entry.source == "generate":
            files = _resolve(spec, entry, generate=True)
            write(f"dataset {entry.info.name}: generated copy in {files.train.parent}")


def _resolve(spec: SweepSpec, entry: DatasetPlan, generate: bool) -> DatasetFiles:
    data = _data_spec(spec)
    return resolve(entry.info.name, data_dir=data.data_dir, cache_dir=data.cache_dir, source=data.source,
                   episodes=data.episodes, seed=data.seed, episode_steps=data.episode_steps, generate=generate,
                   workers=max(1, (os.cpu_count() or 1)), progress=True)  # fmt: skip


def _data_spec(spec: SweepSpec) -> DataSpec:
    """The data settings every trial shares (the sweep's run.data)."""
    return spec.run_spec(spec.algorithms[0].name, spec.tasks[0], spec.seeds[0], spec.algorithms[0].hyperparameters).data


def _check_storage(spec: SweepSpec) -> None:
    try:
        spec.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepSpecError(
            f"cannot create the sweep directory {spec.directory} ({exc.strerror or exc}); choose a writable "
            f"storage (the file's storage: or --storage)."
        ) from None
    if not os.access(spec.directory, os.W_OK | os.X_OK):
        raise SweepSpecError(f"cannot write to {spec.directory} (permission denied); choose a writable storage.")


def _create_experiment(spec: SweepSpec) -> None:
    """Create the MLflow experiment once here: trials creating it at the same moment would race.
    Wrong credentials fail here, before any trial (TrackingAuthError); an unreachable server only warns."""
    from mlflow.tracking import MlflowClient

    from flowsteer.platform.tracking import check_access

    unreachable = check_access(spec.tracking_uri, spec.name)
    if unreachable:  # skip MLflow's own minutes of retries; runs sync when the server is back
        print(f"flowsteer: warning: MLflow at {spec.tracking_uri} is unreachable ({unreachable}); trials go on and "
              f"keep their metrics in their run directories (flowsteer sync sends them later).",
              file=sys.stderr)  # fmt: skip
        return
    try:
        client = MlflowClient(spec.tracking_uri)
        if client.get_experiment_by_name(spec.name) is None:
            client.create_experiment(spec.name)
    except Exception as exc:  # runs keep their metrics on disk and sync later (flowsteer sync)
        print(f"flowsteer: warning: MLflow at {spec.tracking_uri} is unreachable ({redact(str(exc))[:300]}); "
              f"trials keep their metrics in their run directories.", file=sys.stderr)  # fmt: skip


def _cluster_line(info: cluster.ClusterInfo) -> str:
    where = "private local cluster" if info.address == "local" else f"cluster at {info.address}"
    cleaned = f"; stopped {len(info.cleaned)} process(es) left by a killed driver" if info.cleaned else ""
    return f"Ray: {where}, {info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs{cleaned}"


# ---------------------------------------------------------------------------------------------- stages


def _trainable(spec: SweepSpec) -> Any:
    from ray import tune

    resources = spec.resources.as_ray()
    eval_workers = int(spec.run.get("eval_workers", 1))
    if eval_workers > 1 or spec.run.get("use_ray"):
        # Room for the trial's own rollout actors next to its learner, reserved together.
        bundle = {"CPU": resources["cpu"], **({"GPU": resources["gpu"]} if "gpu" in resources else {})}
        placement = tune.PlacementGroupFactory([bundle] + [{"CPU": 1.0}] * eval_workers)
        return tune.with_resources(tune.with_parameters(run_trial, sweep=spec), placement)
    return tune.with_resources(tune.with_parameters(run_trial, sweep=spec), resources)


def _trial_name(trial: Any, spec: SweepSpec) -> str:
    return trial_of(trial.config.get("trial", trial.config), spec).id


def _tune_config(spec: SweepSpec, **kwargs: Any) -> Any:
    from ray import tune

    name = functools.partial(_trial_name, spec=spec)
    return tune.TuneConfig(
        trial_name_creator=name,
        trial_dirname_creator=name,
        max_concurrent_trials=spec.max_concurrent_trials or None,
        reuse_actors=False,
        **kwargs,
    )


def _run_config(spec: SweepSpec, label: str, progress: Any) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=label,
        storage_path=str(spec.directory / "tune"),
        verbose=0,
        callbacks=[progress],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
    )


def _run_trials(spec: SweepSpec, label: str, trials: list[Trial], write: Writer) -> None:
    """Launch every trial not yet finished; Tune retries failures, each from the trial's last checkpoint."""
    from ray import tune

    from flowsteer.sweeps.progress import SweepProgress

    pending = [t for t in trials if t.status() not in FINAL_STATES]
    skipped = len(trials) - len(pending)
    write(f"{label}: {len(trials)} trial(s), {skipped} already done, {len(pending)} to run")
    if not pending:
        return
    # Tune's state for these stages is not needed to resume: the run directories are. Start it afresh.
    shutil.rmtree(spec.directory / "tune" / label, ignore_errors=True)
    progress = SweepProgress(f"{spec.name}/{label}", len(pending), skipped, write)
    tuner = tune.Tuner(
        _trainable(spec),
        param_space={"trial": tune.grid_search([t.to_config() for t in pending])},
        tune_config=_tune_config(spec),
        run_config=_run_config(spec, label, progress),
    )
    tuner.fit()


def _run_optuna(spec: SweepSpec, resume: bool, write: Writer) -> list[Trial]:
    """One Optuna search per (algorithm, task); each suggestion runs every seed (Repeater), Optuna sees the mean."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter, Repeater
    from ray.tune.search.optuna import OptunaSearch

    from flowsteer.sweeps.progress import SweepProgress

    trials: list[Trial] = []
    repeat = len(spec.seeds)
    for algo in spec.algorithms:
        for task in spec.tasks:
            label = f"optuna-{algo.name}-{task.replace('-singletask', '').replace('-v0', '')}"
            path = spec.directory / "tune" / label
            done = read_json(path / "done.json")
            if done is not None:
                write(f"{label}: finished earlier ({len(done['configs'])} trials)")
                trials += [trial_of(c, spec) for c in done["configs"]]
                continue
            total = spec.optuna.suggestions * repeat
            progress = SweepProgress(f"{spec.name}/{label}", total, 0, write)
            if resume and tune.Tuner.can_restore(str(path)):
                write(f"{label}: resuming the search")
                tuner = tune.Tuner.restore(
                    str(path), trainable=_trainable(spec), resume_unfinished=True, resume_errored=True
                )
                tuner._local_tuner._run_config.callbacks = [progress]  # the restored config holds the old callback
            else:
                shutil.rmtree(path, ignore_errors=True)
                searcher: Any = OptunaSearch(metric="score", mode="max", seed=spec.optuna.seed)
                searcher = Repeater(searcher, repeat=repeat, set_index=True)
                if spec.optuna.max_concurrent:
                    searcher = ConcurrencyLimiter(searcher, max_concurrent=spec.optuna.max_concurrent * repeat)
                space = {"stage": "optuna", "algo": algo.name, "task": task, "hp": _search_space(algo.search)}
                tuner = tune.Tuner(
                    _trainable(spec),
                    param_space=space,
                    tune_config=_tune_config(spec, search_alg=searcher, num_samples=total),
                    run_config=_run_config(spec, label, progress),
                )
            results = tuner.fit()
            configs = [_plain(r.config) for r in results]
            write_json_atomic(path / "done.json", {"configs": configs})
            trials += [trial_of(c, spec) for c in configs]
    return trials


def _search_space(search: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from ray import tune

    space = {}
    for key, dist in search.items():
        kind, args = next(iter(dist.items()))
        space[key] = tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)
    return space


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config, default=float))


# ---------------------------------------------------------------------------------------------- results


Choice = dict[tuple[str, str], dict[str, Any]]  # (algorithm, dataset) -> hyperparameters


class SweepIncomplete(RuntimeError):
    """A stage of the sweep ended without what the next stage needs (exit code 1, as unfinished trials)."""


def score_trials(trials: list[Trial]) -> dict[str, float]:
    """Each finished trial's score, read once, by the report's own rule (flowsteer.reports.aggregate.score_run):
    NaN for a trial that is not finished or lacks an evaluation of its window."""
    from flowsteer.reports.aggregate import score_run
    from flowsteer.reports.load import ReportError

    scores = {}
    for trial in trials:
        scores[trial.id] = math.nan
        if trial.status() == "finished":
            with contextlib.suppress(ReportError):  # a damaged run scores NaN; its report warns about it
                scores[trial.id] = score_run(trial.spec.run_dir)
    return scores


def best_setting(groups: dict[Any, list[Trial]], scores: dict[str, float]) -> tuple[Any, float] | None:
    """The group (one setting's trials, one per seed) with the best mean score; only groups whose every seed has
    a score compete; ties go to the earlier group. None when no group competes."""
    best: tuple[Any, float] | None = None
    for key, group in groups.items():
        values = [scores.get(t.id, math.nan) for t in group]
        if any(math.isnan(v) for v in values):
            continue
        mean = sum(values) / len(values)
        if best is None or mean > best[1]:
            best = (key, mean)
    return best


def choose_settings(
    spec: SweepSpec, tuned: list[Trial], scores: dict[str, float] | None = None
) -> tuple[Choice, dict[str, Any]]:
    """tune-then-broadcast: per (algorithm, dataset), the grid point with the best mean score over seeds on the
    default task. Only settings whose every seed finished with a score compete; ties go to the earlier grid point.
    The record names the chosen trials' run ids (selection.json)."""
    scores = score_trials(tuned) if scores is None else scores
    by_dataset: dict[tuple[str, str], dict[str, list[Trial]]] = {}
    for trial in tuned:
        dataset = parse_task(trial.spec.task).dataset.name
        by_dataset.setdefault((trial.spec.algo, dataset), {}).setdefault(trial.setting, []).append(trial)
    best: Choice = {}
    record: dict[str, Any] = {}
    missing = []
    for (algo, dataset), groups in by_dataset.items():
        found = best_setting(groups, scores)
        if found is None:
            missing.append(f"{algo} on {dataset}")
            continue
        group = groups[found[0]]
        best[(algo, dataset)] = group[0].spec.hyperparameters
        record[f"{algo} on {dataset}"] = {"algo": algo, "dataset": dataset, "score": found[1],
                                          "hyperparameters": group[0].spec.hyperparameters, "seeds": len(group),
                                          "task": group[0].spec.task, "runs": [t.id for t in group]}  # fmt: skip
    if missing:
        raise SweepIncomplete(
            f"tuning did not finish any setting with every seed scored for {', '.join(sorted(missing))}, so there "
            f"is nothing to broadcast; see {spec.directory / 'summary.csv'} and rerun with --resume."
        )
    return best, record


def recorded_choice(spec: SweepSpec) -> Choice:
    """The choice an earlier start of a tune-then-broadcast sweep recorded in selection.json ({} if none)."""
    record = read_json(spec.directory / "selection.json", {}) or {}
    return {(c["algo"], c["dataset"]): c["hyperparameters"] for c in record.values()}


def summarize(trials: list[Trial], scores: dict[str, float]) -> pd.DataFrame:
    """One row per trial, from its run directory (the truth, whatever Tune recorded)."""
    rows = []
    for trial in trials:
        state = trial.status()
        status = read_json(trial.spec.run_dir / "status.json", {})
        rows.append({
            "run_id": trial.id,
            "stage": trial.stage,
            "algo": trial.spec.algo,
            "task": trial.spec.task,
            "seed": trial.spec.seed,
            "hyperparameters": json.dumps(trial.spec.hyperparameters, sort_keys=True),
            "state": state,
            "step": status.get("step", 0),
            "score": scores.get(trial.id, math.nan),
            "attempts": sum(a["event"] == "start" for a in read_attempts(trial.spec.run_dir)),
            "message": status.get("message", ""),
            "run_dir": str(trial.spec.run_dir),
        })  # fmt: skip
    return pd.DataFrame(rows)


def final_runs(spec: SweepSpec, outcome: SweepOutcome, scores: dict[str, float]) -> list[str]:
    """Run ids of the sweep's result: every trial (grid), the chosen settings (tune-then-broadcast), or each
    search's best suggestion (optuna)."""
    if spec.mode == "grid":
        return [t.id for t in outcome.trials]
    if spec.mode == "tune-then-broadcast":
        chosen = [run for choice in outcome.selection.values() for run in choice["runs"]]
        return chosen + [t.id for t in outcome.trials if t.stage == "broadcast"]
    searches: dict[tuple[str, str], dict[str, list[Trial]]] = {}
    for trial in outcome.trials:
        searches.setdefault((trial.spec.algo, trial.spec.task), {}).setdefault(trial.setting, []).append(trial)
    runs = []
    for groups in searches.values():
        found = best_setting(groups, scores)
        if found is not None:
            runs += [t.id for t in groups[found[0]]]
    return runs


def write_sweep_report(spec: SweepSpec, outcome: SweepOutcome, scores: dict[str, float], write: Writer) -> list[Path]:
    """The paper's tables of the sweep's final runs (with the report's warnings); the tuning runs get their own
    report beside it."""
    from flowsteer.reports.api import write_report
    from flowsteer.reports.load import ReportError, ReportWarning

    summary = outcome.summary
    if summary is None or not (summary["state"] == "finished").any():
        write("no finished trial: no report written")
        return []
    settings = spec.report
    files: list[Path] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReportWarning)
            files += write_report(spec.runs_dir, spec.directory / "report", layouts=settings.layouts,
                                  formats=settings.formats, stats=settings.stats, plots=settings.plots,
                                  runs=set(final_runs(spec, outcome, scores)), caption=settings.caption)[1]  # fmt: skip
            if spec.mode != "grid":
                tried = [t.id for t in outcome.trials if t.stage != "broadcast"]
                files += write_report(spec.runs_dir, spec.directory / "report" / "tuning", layouts=["task"],
                                      formats=["csv", "md"], runs=set(tried))[1]  # fmt: skip
    except ReportError as exc:
        write(f"report not written: {exc}")
    for warning in caught:
        if issubclass(warning.category, ReportWarning):
            write(f"report warning: {warning.message}")
    return files


def print_summary(spec: SweepSpec, outcome: SweepOutcome, write: Writer = print) -> None:
    summary = outcome.summary
    if summary is None:
        return
    counts = ", ".join(f"{n} {state}" for state, n in sorted(outcome.counts.items()))
    write(f"\nsweep {spec.name}: {len(summary)} trial(s): {counts}")
    finished = summary[summary["state"] == "finished"]
    if not finished.empty:
        table = finished.groupby(["algo", "task", "hyperparameters"])["score"].agg(["mean", "std", "count"])
        write("mean score (success %, last evaluations) over seeds:")
        for (algo, task, hp), row in table.sort_values("mean", ascending=False).head(10).iterrows():
            write(f"  {algo:8s} {task:42s} {row['mean']:6.1f} ± {0 if pd.isna(row['std']) else row['std']:5.1f} "
                  f"({int(row['count'])} seeds) {hp}")  # fmt: skip
    failed = summary[~summary["state"].isin(["finished"])]
    for row in failed.itertuples():
        write(f"  not finished: {row.run_id} ({row.state}) {row.message[:200]}")
    write(f"results: {spec.directory}")
    write(f"  runs     {spec.runs_dir}  (one directory per trial)")
    write(f"  summary  {spec.directory / 'summary.csv'}")
    if outcome.report_files:
        write(f"  report   {spec.directory / 'report'}  ({len(outcome.report_files)} files)")
    write(f"  MLflow   {spec.tracking_uri} (experiment {spec.name})")


def _spec_record(spec: SweepSpec) -> dict[str, Any]:
    record = dataclasses.asdict(spec)
    record["source"] = str(spec.source) if spec.source else None
    return json.loads(json.dumps(record, default=str))
