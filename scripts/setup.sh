#!/usr/bin/env bash
# Create .venv and install flowsteer with the locked environment (requirements-dev.lock: every package at one
# version, checked by hash); a no-op when nothing changed.
# Sourced by scripts/main.sh and scripts/test.sh; needs only python3 (>= 3.11) and pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "flowsteer needs Python >= 3.11 (found: $("$python" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.flowsteer-installed
# torch base policies (the `torch` extra in pyproject.toml; the tests train and load one), not in
# the hash-checked lock because its wheels differ per platform and accelerator (pip picks the one for this machine)
torch_pin=torch==2.13.0
want=$( (cat requirements-dev.lock pyproject.toml; echo "$torch_pin") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing pinned dependencies and $torch_pin into .venv (about 2.5 GB, 2-3 minutes)"
    log=.venv/install.log
    if ! { .venv/bin/python -m pip install --disable-pip-version-check -q --require-hashes -r requirements-dev.lock &&
           .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e . &&
           .venv/bin/python -m pip install --disable-pip-version-check -q "$torch_pin"; } >"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" >&2 || true
        echo "setup: pip failed; the full log is in $log" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
fi
