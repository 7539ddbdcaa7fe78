#!/usr/bin/env bash
# The main job on local defaults: set up (idempotent), generate a small OGBench dataset with the scripted
# oracles and show it. Later versions grow this into a small sweep that ends in a results table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
flowsteer=.venv/bin/flowsteer
task=cube-single-play-singletask-v0
$flowsteer data generate "$task" --episodes 20 --workers 2
$flowsteer data info "$task" --episodes 20 --stats
$flowsteer data list
