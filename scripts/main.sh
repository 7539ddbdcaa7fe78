#!/usr/bin/env bash
# The main job on local defaults: set up (idempotent), then run the quickstart sweep (examples/quickstart.yaml:
# BC and FQL, 2 seeds each, short runs with small networks on a small dataset generated here with OGBench's
# scripted oracles) on a private local Ray cluster, ending in the results table beside the published numbers.
# About 3-4 minutes on 2 cores; rerun it and finished trials are reused, interrupted ones resumed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
out=flowsteer-out
.venv/bin/flowsteer sweep examples/quickstart.yaml --storage "$out" --resume "$@"
echo
cat "$out/quickstart/report/report-published.md"
