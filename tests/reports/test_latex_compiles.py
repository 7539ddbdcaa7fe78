"""The LaTeX table compiles with a real TeX installation, and the PDF shows the CSV's numbers.

scripts/test.sh installs pdflatex (texlive-latex-base, -recommended) and pdftotext (poppler-utils) when
missing and sets FLOWSTEER_REQUIRE_LATEX=1, so there this test cannot be skipped.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from flowsteer.reports.aggregate import Aggregation
from flowsteer.reports.load import load_runs
from flowsteer.reports.tables import build_report
from flowsteer.reports.writers import to_csv, to_latex_document

TOOLS = ("pdflatex", "pdftotext")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
if missing and os.environ.get("FLOWSTEER_REQUIRE_LATEX"):
    raise RuntimeError(f"FLOWSTEER_REQUIRE_LATEX is set but {missing} are not installed (see scripts/test.sh)")
pytestmark = [
    pytest.mark.integration,  # pdflatex
    pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (scripts/test.sh installs them)"),
]


def test_the_latex_table_compiles_and_shows_the_csv_numbers(write_run, tmp_path):
    cube = "cube-single-play-singletask-task2-v0"
    for algo, per_seed in {"fql": [0.81, 0.62, 0.73], "iql": [0.355, 0.41, 0.3]}.items():
        for seed, value in enumerate(per_seed):
            write_run(algo, cube, seed, {100: value})
    # a second iql configuration: its column label "iql (q_agg=min)" needs escaping, its cell a note
    write_run("iql", cube, 0, {100: 0.2}, hyperparameters={"q_agg": "min"})
    write_run("fql", "scene-play-singletask-task1-v0", 0, {100: 0.5, 200: 0.75}, offline_steps=100, online_steps=100)
    report = build_report(load_runs(tmp_path / "runs"), "task", Aggregation(last_k=1))
    source = tmp_path / "table.tex"
    source.write_text(to_latex_document(report))
    compiled = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:]
    pdf_text = subprocess.run(["pdftotext", "table.pdf", "-"], cwd=tmp_path, capture_output=True, text=True).stdout
    pdf_text = re.sub(r"\s+", " ", pdf_text)

    cells = pd.read_csv(io.StringIO(to_csv(report)))
    offline = cells[cells["setting"] == "offline"]
    assert len(offline) == 3
    for _, cell in offline.iterrows():
        assert f"{cell['mean']:.0f} ± {cell['std']:.0f}" in pdf_text
    assert "72 ± 8" in pdf_text  # fql on cube task2: (81 + 62 + 73) / 3 = 72.0, std 7.79
    assert "36 ± 4" in pdf_text  # iql: (35.5 + 41 + 30) / 3 = 35.5, std 4.49; rounds half to even -> 36
    assert "50 ± 0 → 75 ± 0" in pdf_text
    assert re.search(r"iql \(q.agg=min\)", pdf_text) and "20 ± 0" in pdf_text  # pdftotext drops the _
    assert "missing seeds 1, 2" in pdf_text
    assert "Success rate (%)" in pdf_text
