#!/usr/bin/env bash
# The test command: set up (idempotent), then lint and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The report tests compile LaTeX (tests/reports/test_latex_compiles.py); about 35 s to install on Debian.
if ! { command -v pdflatex && command -v pdftotext; } >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            texlive-latex-base texlive-latex-recommended poppler-utils >/dev/null
    else
        echo "test: pdflatex/pdftotext missing and no root to install them: the LaTeX compile test is skipped" >&2
    fi
fi
if { command -v pdflatex && command -v pdftotext; } >/dev/null; then
    export FLOWSTEER_REQUIRE_LATEX=1  # CI installs them, so there the test may not skip
fi
.venv/bin/ruff check flowsteer tests benchmarks
.venv/bin/ruff format --check flowsteer tests benchmarks
status=0
# Two workers: most tests are dominated by single-threaded XLA compilation, so two at once use both cores; tests
# that start Ray clusters stay together in one worker (tests/conftest.py). FLOWSTEER_TEST_WORKERS=0 runs serially.
workers=${FLOWSTEER_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 0 ]; then
    parallel=(-n "$workers" --dist loadgroup)
fi
.venv/bin/python -m pytest "${parallel[@]}" --durations=15 "$@" || status=$?  # the 15 slowest, to keep the tiers honest
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
