"""Ray Tune wiring: the trainable, its resources, the Tune and run configs, the Optuna search, and where Tune
leaves a failed trial's traceback.

Each Tune trial trains one seed group (trials.py; one seed by default) and is named, and its directory under
``tune/<stage>/`` called, by the group's name: its first run id, with '+N' for N more seeds.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsteer.sweeps.progress import SweepProgress
from flowsteer.sweeps.spec import AlgorithmSweep, Distribution, SweepSpec
from flowsteer.sweeps.trainable import group_of, run_trial
from flowsteer.sweeps.trials import Trial, TrialGroup, group_trials, grouping_note, groups_to_run, seed_groups

Writer = Callable[[str], None]
ERROR_FILE = "error.txt"  # Tune's text record of a trial's failures (ray.air.constants.EXPR_ERROR_FILE)


def run_trials(spec: SweepSpec, label: str, trials: list[Trial], write: Writer) -> None:
    """Launch every trial not yet finished, in seed groups of up to seeds_per_trial (one Tune trial each; a group
    whose seeds are all done is not launched); Tune retries failures, each from the seeds' last checkpoints."""
    from ray import tune

    groups = groups_to_run(spec, trials)
    runs = {g.id: len(g.pending()) for g in groups}
    skipped = len(trials) - sum(runs.values())
    note = grouping_note(spec, len(groups))
    write(f"{label}: {len(trials)} trial(s), {skipped} already done, {sum(runs.values())} to run{note}")
    if not groups:
        return
    # Tune's state for these stages is not needed to resume: the run directories are. Start it afresh.
    shutil.rmtree(spec.directory / "tune" / label, ignore_errors=True)
    progress = SweepProgress(f"{spec.name}/{label}", sum(runs.values()), skipped, write, runs)
    tuner = tune.Tuner(
        trainable(spec, groups),
        param_space={"group": tune.grid_search([g.id for g in groups])},
        tune_config=tune_config(spec, groups),
        run_config=run_config(spec, label, progress),
    )
    tuner.fit()


def run_search(
    spec: SweepSpec, label: str, algo: AlgorithmSweep, task: str, resume: bool, write: Writer
) -> list[dict[str, Any]]:
    """One Optuna search of ``algo`` on ``task``: each suggestion runs every seed group (Repeater; one seed each by
    default) and Optuna sees the mean. Continues the search's Tune state with ``resume``; returns every trial's
    config (plain data)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter, Repeater
    from ray.tune.search.optuna import OptunaSearch

    path = spec.directory / "tune" / label
    repeat = len(seed_groups(spec))  # Tune trials per suggestion
    total = spec.optuna.suggestions * repeat
    progress = SweepProgress(f"{spec.name}/{label}", total * spec.seeds_per_trial, 0, write,
                             runs_per_trial=spec.seeds_per_trial)  # fmt: skip
    if resume and tune.Tuner.can_restore(str(path)):
        write(f"{label}: resuming the search")
        tuner = tune.Tuner.restore(str(path), trainable=trainable(spec), resume_unfinished=True, resume_errored=True)
        replace_callbacks(tuner, [progress])  # the restored config holds the old, pickled callback
    else:
        shutil.rmtree(path, ignore_errors=True)
        searcher: Any = OptunaSearch(metric="score", mode="max", seed=spec.optuna.seed)
        searcher = Repeater(searcher, repeat=repeat, set_index=True)
        if spec.optuna.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=spec.optuna.max_concurrent * repeat)
        space = {"algo": algo.name, "task": task, "hp": search_space(algo.search)}
        tuner = tune.Tuner(
            trainable(spec),
            param_space=space,
            tune_config=tune_config(spec, search_alg=searcher, num_samples=total),
            run_config=run_config(spec, label, progress),
        )
    return [json.loads(json.dumps(r.config, default=float)) for r in tuner.fit()]


def replace_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Give a restored Tuner new callbacks. Tune has no public way to (Tuner.restore takes no run config), so
    this sets its run config's callbacks; a Ray whose Tuner lacks them fails here, by name, not later."""
    import ray

    try:
        run_config = tuner._local_tuner._run_config
        run_config.callbacks  # noqa: B018 (the attribute must exist; it is replaced below)
    except AttributeError as exc:
        raise RuntimeError(
            f"Ray {ray.__version__} changed Tuner's internals ({exc}): flowsteer cannot give a restored Optuna "
            f"search its progress callback. Install the Ray version in requirements.txt, or update "
            f"flowsteer.sweeps.tune_runner.replace_callbacks for this one."
        ) from None
    run_config.callbacks = callbacks


def trainable(spec: SweepSpec, groups: list[TrialGroup] | None = None) -> Any:
    """run_trial with its resources (a group's, shared by its seeds); ``groups`` are the seed groups a grid stage
    names (None: suggestions)."""
    from ray import tune

    known = {g.id: g for g in groups or []}
    resources = spec.resources.as_ray()
    eval_workers = int(spec.run.get("eval_workers", 1))
    function = tune.with_parameters(run_trial, sweep=spec, groups=known)
    if eval_workers > 1 or spec.run.get("use_ray"):
        # Room for the trial's own rollout actors next to its learner, reserved together.
        bundle = {"CPU": resources["cpu"], **({"GPU": resources["gpu"]} if "gpu" in resources else {})}
        return tune.with_resources(function, tune.PlacementGroupFactory([bundle] + [{"CPU": 1.0}] * eval_workers))
    return tune.with_resources(function, resources)


def tune_config(spec: SweepSpec, groups: list[TrialGroup] | None = None, **kwargs: Any) -> Any:
    from ray import tune

    name = functools.partial(_trial_name, spec=spec, known={g.id: g for g in groups or []})
    return tune.TuneConfig(
        trial_name_creator=name,
        trial_dirname_creator=name,
        max_concurrent_trials=spec.max_concurrent_trials or None,
        reuse_actors=False,
        **kwargs,
    )


def _trial_name(trial: Any, spec: SweepSpec, known: dict[str, TrialGroup]) -> str:
    return group_of(trial.config, spec, known).id


def run_config(spec: SweepSpec, label: str, progress: SweepProgress) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=label,
        storage_path=str(spec.directory / "tune"),
        verbose=0,
        callbacks=[progress],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
    )


def search_space(search: dict[str, Distribution]) -> dict[str, Any]:
    """The sweep file's search distributions as Tune's (``{loguniform: [a, b]}`` -> tune.loguniform(a, b))."""
    from ray import tune

    return {
        key: tune.choice(dist.args) if dist.kind == "choice" else getattr(tune, dist.kind)(*dist.args)
        for key, dist in search.items()
    }


# ---------------------------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class TrialError:
    """The last failure Tune recorded for a trial: its exception and the last frames of its traceback."""

    error_file: Path  # every failure of the trial, in full
    exception: list[str]  # 'module.Type: message' (and any further lines of the message)
    frames: list[str]  # the innermost frames, as the traceback prints them


def error_files(spec: SweepSpec, trials: list[Trial]) -> dict[str, Path]:
    """Run id -> Tune's error file, for every one of ``trials`` whose Tune trial (its seed group) failed (newest
    wins)."""
    found = sorted((spec.directory / "tune").glob(f"*/*/{ERROR_FILE}"), key=lambda p: p.stat().st_mtime)
    by_group = {path.parent.name: path for path in found}
    return {t.id: by_group[g.id] for g in group_trials(spec, trials) if g.id in by_group for t in g.trials}


def read_error(error_file: Path, frames: int = 3) -> TrialError:
    """The last failure in a Tune error file, reduced to its exception and its ``frames`` innermost frames."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", error_file.read_text(errors="replace"))  # Ray colours its headers
    last = re.split(r"^Failure # \d+ .*$", text, flags=re.MULTILINE)[-1]
    lines = [line for line in last.splitlines() if line.strip(" ^~")]  # no blank or caret-marker lines
    starts = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not starts:  # not a Python traceback (e.g. a lost node): its last lines say what happened
        return TrialError(error_file, lines[-3:], [])
    code = starts[-1] + 1
    while code < len(lines) and lines[code].startswith(" "):
        code += 1
    return TrialError(error_file, lines[code:][:5], lines[starts[max(0, len(starts) - frames)] : code])
