#!/usr/bin/env bash
# The test command: set up (idempotent), then lint and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The report tests compile LaTeX (tests/reports/test_latex_compiles.py); about 35 s to install on Debian.
command -v pdflatex >/dev/null && command -v pdftotext >/dev/null || (apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended poppler-utils >/dev/null)
export FLOWSTEER_REQUIRE_LATEX=1
.venv/bin/ruff check flowsteer tests benchmarks
.venv/bin/ruff format --check flowsteer tests benchmarks
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
