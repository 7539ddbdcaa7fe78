#!/usr/bin/env bash
# Re-lock after an edit of requirements.txt, requirements-dev.txt or an image's .in file: writes every lock file,
# each pinning the whole environment with sha256 hashes, for Python 3.11 on Linux x86_64. Versions already in a
# lock stay unless the requirements exclude them; extra arguments go to uv (--upgrade-package NAME moves one).
#   bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

uv=${UV:-.venv/bin/uv}  # pinned in requirements-dev.txt
if [ ! -x "$uv" ] && ! command -v "$uv" >/dev/null; then
    echo "lock: $uv not found; run bash scripts/setup.sh first (or set UV=/path/to/uv)." >&2
    exit 1
fi
compile() {
    local out=$1
    shift
    "$uv" pip compile "$@" --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --custom-compile-command "bash scripts/lock.sh" --quiet "${extra[@]}" -o "$out"
}
extra=("$@")
# The development environment (scripts/setup.sh installs it); the images' locks keep its versions.
compile requirements-dev.lock requirements-dev.txt
compile infra/docker/requirements-cpu.lock requirements.txt infra/docker/cpu.in -c requirements-dev.lock
compile infra/docker/requirements-gpu.lock requirements.txt infra/docker/gpu.in -c infra/docker/requirements-cpu.lock
compile infra/mlflow/requirements.lock infra/mlflow/requirements.in -c requirements.txt -c requirements-dev.lock
