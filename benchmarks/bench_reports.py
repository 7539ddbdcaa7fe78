"""Report generation time for 1,000 runs x 10 evaluations (issue 7; target: under 10 s from the Parquet cache).

Writes 1,000 run directories shaped like the run loop's (5 algorithms x 10 tasks, the five of cube-single-play
and of scene-play, x 20 seeds; eval.csv with 10 evaluations of 5 columns), then times:
  1. loading them cold (every file read, Parquet cache written);
  2. loading them from the Parquet cache;
  3. aggregation and all three formats for the task, category and published layouts (from the cache);
  4. with --mlflow: the same runs logged to an MLflow experiment (sqlite), loaded cold and from its cache.
Each timing is the best of --trials (MLflow cold: one trial).
Usage: python benchmarks/bench_reports.py [--runs-per-cell 20] [--trials 3] [--mlflow]
This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from flowsteer.reports.load import CACHE_DIR, load_runs
from flowsteer.reports.mlflow_source import load_mlflow
from flowsteer.reports.tables import build_report
from flowsteer.reports.writers import to_csv, to_latex_document, to_markdown

ALGOS = ("bc", "iql", "rebrac", "ifql", "fql")
TASKS = [f"{c}-singletask-task{t}-v0" for c in ("cube-single-play", "scene-play") for t in range(1, 6)]
STEPS = [100_000 * i for i in range(1, 11)]


def write_runs(root: Path, seeds: int) -> int:
    rng = np.random.default_rng(0)
    protocol_base = {
        "setting": "offline",
        "offline_steps": STEPS[-1],
        "online_steps": 0,
        "evaluation": {"interval": STEPS[0], "episodes": 50, "steps": STEPS},
        "success_timing": "pre",
        "dataset": {"source": "official"},
        "versions": {"ogbench": "1.2.2", "jax": "0.10.2"},
    }
    count = 0
    for algo in ALGOS:
        for task in TASKS:
            for seed in range(seeds):
                run_id = f"{algo}-{task}-s{seed}"
                path = root / run_id
                path.mkdir(parents=True)
                spec = {"algo": algo, "task": task, "seed": seed, "hyperparameters": {}, "offline_steps": STEPS[-1]}
                (path / "config.json").write_text(json.dumps({"run": spec, "run_id": run_id}))
                (path / "protocol.json").write_text(json.dumps({**protocol_base, "run_id": run_id, "seed": seed}))
                success = rng.integers(0, 51, size=len(STEPS)) / 50
                rows = [
                    f"{float(s)},{500.0},{-500.0 * (1 - v)},50.0,{float(v)!r}"
                    for s, v in zip(STEPS, success, strict=True)
                ]
                header = "step,episode_length,episode_return,episodes,success\n"
                (path / "eval.csv").write_text(header + "\n".join(rows) + "\n")
                (path / "status.json").write_text('{"state": "finished"}')
                count += 1
    return count


def log_to_mlflow(root: Path, uri: str) -> None:
    """The run directories' evaluations and parameters as the platform's tracking logs them."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(
        "bench", artifact_location=(root.parent / (root.name + "-mlartifacts")).as_uri()
    )
    for path in sorted(p for p in root.iterdir() if (p / "config.json").exists()):
        spec = json.loads((path / "config.json").read_text())["run"]
        tags = {"algo": spec["algo"], "task": spec["task"], "seed": str(spec["seed"]), "run_id": path.name}
        run = client.create_run(experiment, run_name=path.name, tags={**tags, "flowsteer": "run"})
        params = {"run.offline_steps": STEPS[-1], "run.online_steps": 0, "run.eval_interval": STEPS[0]}
        params |= {"run.eval_episodes": 50, "run.setting": "offline", "data.source": "official"}
        lines = (path / "eval.csv").read_text().splitlines()
        names = lines[0].split(",")[1:]
        metrics = []
        for line in lines[1:]:
            step, *values = line.split(",")
            metrics += [
                Metric(f"evaluation/{n}", float(v), 0, int(float(step))) for n, v in zip(names, values, strict=True)
            ]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(run.info.run_id)


def best_of(trials: int, fn) -> float:
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-cell", type=int, default=20, help="seeds per (algorithm, task)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--mlflow", action="store_true", help="also time loading from an MLflow experiment")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        start = time.perf_counter()
        runs = write_runs(root, args.runs_per_cell)
        print(f"wrote {runs} run directories x {len(STEPS)} evaluations in {time.perf_counter() - start:.1f} s")

        def cold() -> None:
            shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
            load_runs(root)

        print(f"load, cold (all files read, cache written): {best_of(args.trials, cold):.2f} s")
        print(f"load, from the Parquet cache:              {best_of(args.trials, lambda: load_runs(root)):.3f} s")

        def tables() -> None:
            tidy = load_runs(root)
            for layout in ("task", "category", "published"):
                report = build_report(tidy, layout)
                to_csv(report), to_markdown(report), to_latex_document(report)

        print(f"cache -> 3 layouts x 3 formats (total):    {best_of(args.trials, tables):.2f} s")
        if args.mlflow:
            uri = f"sqlite:///{root.parent / (root.name + '-mlflow.db')}"
            start = time.perf_counter()
            log_to_mlflow(root, uri)
            print(f"logged {runs} runs to MLflow (sqlite) in {time.perf_counter() - start:.1f} s")
            cache = root / "mlflow-cache"
            start = time.perf_counter()
            load_mlflow(uri, "bench", cache)
            print(f"MLflow load, cold (search + metric histories): {time.perf_counter() - start:.2f} s")
            warm = best_of(args.trials, lambda: load_mlflow(uri, "bench", cache))
            print(f"MLflow load, from its Parquet cache (search only): {warm:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for leftover in root.parent.glob(root.name + "-mlflow.db"):
            leftover.unlink()
        shutil.rmtree(root.parent / (root.name + "-mlartifacts"), ignore_errors=True)


if __name__ == "__main__":
    main()
