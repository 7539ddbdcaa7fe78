"""``flowsteer train``: one run, or one seed group (``--seeds``); ``flowsteer sync``: send a run directory's metrics
to MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowsteer.algorithms.registry import ALGORITHMS
from flowsteer.cli.data import add_data_source_options, data_source_settings
from flowsteer.platform.loop import RunDiverged, RunResult, run, run_group
from flowsteer.platform.spec import RunSpec, RunSpecError
from flowsteer.platform.tracking import check_access, sync_run
from flowsteer.rundir import EVAL_LOG, PROTOCOL, TRAIN_LOG, RunDirectory
from flowsteer.trackinguri import check_no_password
from flowsteer.yamlfile import YamlInputError, parse_yaml, read_yaml

# CLI flag -> RunSpec field, for the flags that map one to one.
_RUN_FLAGS = [
    ("seed", int, "seed of the learner, evaluation and online collection (default 0)"),
    ("offline_steps", int, "offline gradient steps (default 1,000,000)"),
    ("online_steps", int, "online environment steps after the offline phase (default 0)"),
    ("utd", int, "updates per online environment step (default 1)"),
    ("eval_interval", int, "steps between evaluations (default 100,000)"),
    ("eval_episodes", int, "episodes per evaluation (default 50)"),
    ("eval_workers", int, "rollout workers evaluating in parallel (default 1)"),
    ("eval_envs", int, "environments stepped together per rollout worker (default 10)"),
    ("log_interval", int, "steps between rows of train.csv (default 5,000)"),
    ("checkpoint_interval", int, "steps between checkpoints (default 100,000)"),
    ("chunk_size", int, "offline updates per compiled dispatch (default 1,000)"),
    (
        "action_chunk",
        int,
        "H: actions per policy call, executed open loop, and H-step training chunks (Q-chunking; default 1)",
    ),
    ("start_training", int, "online steps collected before the first online update (QC, QAM: 5,000; default 0)"),
    ("buffer_size", int, "replay capacity of the online phase (default 2,000,000)"),
    ("base_device", str, "device of a base policy file (--hp base_policy=FILE): cpu, cuda or cuda:N (default cpu)"),
    ("base_serving", str, "where a base policy file runs: process, node (one Ray actor per node) or gpu (one per GPU)"),
    ("output_dir", str, "where run directories go (default ./runs)"),
    ("tracking_uri", str, "MLflow URI (default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)"),
    ("experiment", str, "MLflow experiment (default flowsteer)"),
]


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="run one algorithm on one task (offline, then optionally online)",
        description="Run one algorithm on one OGBench task with one seed. The paper's hyperparameters for the "
        "task apply unless overridden with --hp NAME=VALUE. The run directory (config, protocol, CSV logs, "
        "checkpoints) is the source of truth; metrics also go to MLflow.",
    )
    parser.add_argument("--config", type=Path, help="a YAML or JSON RunSpec; flags given too override it")
    parser.add_argument("--algo", help=", ".join(ALGORITHMS))
    parser.add_argument("--task", help="e.g. cube-single-play-singletask-task2-v0")
    seeds = parser.add_mutually_exclusive_group()
    for name, kind, text in _RUN_FLAGS:
        (seeds if name == "seed" else parser).add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)
    seeds.add_argument(
        "--seeds",
        type=parse_seeds,
        metavar="SEEDS",
        help="train several seeds of this setting together in one program (0-7, 0,3,5 or 0-3,8); each seed gets "
        "the run directory and run id it has alone",
    )
    parser.add_argument(
        "--hp", action="append", default=[], metavar="NAME=VALUE", help="algorithm hyperparameter override"
    )
    add_data_source_options(parser)
    parser.add_argument(
        "--sparse-reward",
        action="store_true",
        default=None,
        help="QC/QAM --sparse: reward success - 1 on the data, online and in evaluation (scene, puzzle, cube-double+)",
    )
    parser.add_argument(
        "--success-timing",
        choices=["default", "pre", "post"],
        help="when OGBench computes reward and success: before the action (pre), after it (post: ogbench < 1.2, "
        "as QC and FQL ran), or as the installed ogbench does (default; 1.2.2: pre)",
    )
    parser.add_argument("--use-ray", action="store_true", default=None, help="rollout workers as Ray actors")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_train)

    sync = commands.add_parser(
        "sync",
        help="send run directories' metrics that MLflow has not received",
        description="Send the rows of train.csv and eval.csv that MLflow has not received (the tracking server was "
        "down or wrong while the run trained), stamped with the time each row was measured.",
    )
    sync.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    sync.add_argument("--tracking-uri", help="send to this MLflow URI instead of the one the run recorded (its rows "
                      "then go to a new MLflow run there)")  # fmt: skip
    sync.set_defaults(run=_sync)


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ranges and single seeds separated by commas (0-7, 0,3,5, 0-3,8), each seed once, in the order
    written."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of seeds: give ranges and seeds >= 0 separated by commas, e.g. 0-7, "
                f"0,3,5 or 0-3,8"
            ) from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} in {text!r} is no range of seeds: write LOW-HIGH "
                                             f"with 0 <= LOW <= HIGH, e.g. 0-7")  # fmt: skip
        seeds += range(first, last + 1)
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} names seed {twice[0]} twice; name each seed once")
    return seeds


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """The RunSpecs of a `flowsteer train` command line: one, or one per seed of ``--seeds``."""
    spec = spec_from_args(args)
    return [spec.replace(seed=seed) for seed in args.seeds] if getattr(args, "seeds", None) else [spec]


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The RunSpec of a `flowsteer train` command line (config file first, then flags)."""
    values: dict[str, Any] = _read_config(args.config) if args.config else {}
    where = f"{args.config}: " if args.config else ""
    data = _mapping(values.pop("data", None), f"{where}data", "data settings (source, episodes, seed, ...)")
    for name in ("algo", "task", "sparse_reward", "success_timing", "use_ray", *(flag for flag, _, _ in _RUN_FLAGS)):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    hyperparameters = _mapping(values.pop("hyperparameters", None), f"{where}hyperparameters", "NAME: VALUE pairs")
    for item in args.hp:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise RunSpecError(f"--hp expects NAME=VALUE (e.g. --hp alpha=30), got {item!r}")
        try:
            hyperparameters[name.strip()] = parse_yaml(text, f"--hp {item}")
        except YamlInputError as exc:
            raise RunSpecError(f"{exc} (lists look like [64, 64])") from None
    values["hyperparameters"] = hyperparameters
    values["data"] = data | data_source_settings(args)
    for required in ("algo", "task"):
        if not values.get(required):
            raise RunSpecError(f"--{required} is required (or give it in --config)")
    return RunSpec.from_dict(values)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        loaded = read_yaml(path, "run config")
    except YamlInputError as exc:
        raise RunSpecError(str(exc)) from None
    if not isinstance(loaded, dict):
        raise RunSpecError(f"{path} must hold a mapping of RunSpec fields")
    return loaded


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunSpecError(f"{where} must be a mapping of {what}, got {value!r}.")
    return dict(value)


def _train(args: argparse.Namespace) -> int:
    specs = specs_from_args(args)
    if len(specs) > 1:
        return _train_group(specs, args)
    spec = specs[0]
    print(f"run {spec.run_id}: {spec.algo} on {spec.task}, seed {spec.seed}, {spec.setting}")
    print(f"  directory {spec.run_dir}")
    print(f"  MLflow    {spec.resolved_tracking_uri()} (experiment {spec.experiment})")
    check_access(spec.resolved_tracking_uri(), spec.experiment)  # wrong credentials stop here, not mid-run
    result = run(spec, resume=args.resume, progress=not args.quiet)
    evals = RunDirectory(result.run_dir).rows(EVAL_LOG)
    print(f"{result.status} at step {result.step:,} in {result.seconds:.0f} s")
    if evals:
        last = evals[-1]
        print(f"  last evaluation (step {int(last['step']):,}): success {last['success']:.3f}, "
              f"return {last['episode_return']:.1f} over {int(last['episodes'])} episodes")  # fmt: skip
    elif spec.eval_episodes == 0:
        print("  no evaluations (eval_episodes 0)")
    files = ", ".join(name for name in (EVAL_LOG, TRAIN_LOG, PROTOCOL) if (result.run_dir / name).exists())
    print(f"  results in {result.run_dir} ({files})")
    return 0


def _train_group(specs: list[RunSpec], args: argparse.Namespace) -> int:
    """``--seeds``: one seed group in one program; one line per seed at the end. A seed that diverged stops alone;
    the command then ends as a diverged run does (RunDiverged: exit code 3)."""
    first = specs[0]
    seeds = ", ".join(str(spec.seed) for spec in specs)
    print(f"group of {len(specs)} seeds: {first.algo} on {first.task}, seeds {seeds}, {first.setting}")
    print(f"  directories under {first.run_dir.parent}")
    print(f"  MLflow    {first.resolved_tracking_uri()} (experiment {first.experiment})")
    check_access(first.resolved_tracking_uri(), first.experiment)  # wrong credentials stop here, not mid-run
    results = run_group(specs, resume=args.resume, progress=not args.quiet)
    for spec, result in zip(specs, results, strict=True):
        print(_seed_line(spec, result))
    diverged = [spec.run_id for spec, result in zip(specs, results, strict=True) if result.status == "diverged"]
    if diverged:
        raise RunDiverged(f"{len(diverged)} seed(s) of the group diverged ({', '.join(diverged)}); their last good "
                          f"checkpoints are kept, and the other seeds went on")  # fmt: skip
    return 0


def _seed_line(spec: RunSpec, result: RunResult) -> str:
    """One seed of a group: its run id, how it ended (and why, if it did not finish), its last evaluation's
    success."""
    evals = RunDirectory(result.run_dir).rows(EVAL_LOG)
    last = f"last success {evals[-1]['success']:.3f} (step {int(evals[-1]['step']):,})" if evals else "no evaluation"
    why = f" ({result.message[:200]})" if result.status != "finished" and result.message else ""
    return f"  seed {spec.seed:<4d} {spec.run_id}  {result.status} at step {result.step:,}{why}  {last}"


def _sync(args: argparse.Namespace) -> int:
    if args.tracking_uri:
        check_no_password(args.tracking_uri, "--tracking-uri")
    failed = 0
    for path in args.run_dirs:
        outcome = sync_run(RunDirectory(path), args.tracking_uri)
        print(f"{path}: {outcome.message}")
        failed += not outcome.ok
    return 1 if failed else 0
