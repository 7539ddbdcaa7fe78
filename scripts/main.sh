#!/usr/bin/env bash
# The main job on local defaults: set up (idempotent), then run the quickstart sweep (examples/quickstart.yaml:
# BC and FQL, 2 seeds each, on cube-single's default task, a reduced protocol with small networks on a dataset
# generated here with OGBench's scripted oracles) on a private local Ray cluster, ending with where the results
# are and the table beside the published numbers. About 10 minutes on 2 cores after set-up (measured: see
# examples/quickstart.yaml); rerun it and finished trials are reused, interrupted ones resumed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
start=$SECONDS
out=$PWD/flowsteer-out
.venv/bin/flowsteer sweep examples/quickstart.yaml --storage "$out" --resume "$@"
report=$out/quickstart/report
echo
echo "sweep finished in $((SECONDS - start)) s (after set-up)"
echo "runs:         $out/quickstart/runs/ (one run directory per trial)"
echo "MLflow store: ${MLFLOW_TRACKING_URI:-sqlite:///$out/mlflow.db} (experiment quickstart)"
echo "LaTeX table:  $report/report-published.tex (also .md and .csv beside it)"
echo
cat "$report/report-published.md"
