#!/usr/bin/env bash
# The main job on local defaults: set up (idempotent), generate a small OGBench dataset with the scripted
# oracles, run BC and FQL with 2 seeds each (short runs, small networks; Ray Tune sweeps come later), and end
# with the results table beside the published numbers. About 3-5 minutes on 2 cores; finished runs are reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
flowsteer=.venv/bin/flowsteer
task=cube-single-play-singletask-v0
out=flowsteer-out
$flowsteer data generate "$task" --episodes smoke --workers 2
$flowsteer data info "$task" --episodes smoke --stats
small_actor=(--hp "actor_hidden_dims=[256, 256]")
small_critic=(--hp "value_hidden_dims=[256, 256]")
for seed in 0 1; do
    for algo in bc fql; do
        sizes=("${small_actor[@]}")
        [ "$algo" = bc ] || sizes+=("${small_critic[@]}")
        $flowsteer train --algo "$algo" --task "$task" --seed "$seed" --episodes smoke \
            --offline-steps 3000 --eval-interval 1000 --eval-episodes 10 --log-interval 500 \
            --checkpoint-interval 1000 "${sizes[@]}" --quiet \
            --output-dir "$out/runs" --tracking-uri "sqlite:///$PWD/$out/mlflow.db" --resume
    done
done
$flowsteer report "$out/runs" --out "$out/report" --layout task,published
