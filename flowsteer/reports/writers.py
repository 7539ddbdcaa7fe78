"""A Report as CSV (unrounded, machine-readable), Markdown or LaTeX (booktabs, escaped)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from flowsteer.reports.tables import ARROW, PM, Report, cell_text, row_label

FORMATS = {"csv": "csv", "md": "md", "latex": "tex"}
CSV_COLUMNS = [
    "kind",
    "layout",
    "row",
    "method",
    "algorithm",
    "setting",
    "phase",
    "mean",
    "std",
    "ddof",
    "n_seeds",
    "seeds",
    "bold",
    "default_task",
    "flags",
    "provenance",
    "last_k",
    "bold_fraction",
    "source",
]


def to_csv(report: Report) -> str:
    """Every cell, unrounded, one row per (row, method, phase); published rows carry their source."""
    own = report.cells.assign(kind="flowsteer", last_k=report.agg.last_k, bold_fraction=report.agg.bold_fraction)
    paper = report.published.assign(kind="published", bold=False)
    table = pd.concat([own, paper], ignore_index=True).reindex(columns=CSV_COLUMNS)
    return table.to_csv(index=False, float_format=lambda x: repr(float(x)))


def _grid(report: Report) -> tuple[list[str], list[tuple[str, list[tuple[str, bool, str]]]]]:
    """Header and rows of (label, [(text, bold, note marks) per column])."""
    methods = report.methods()
    note_of = {}
    for number, key in enumerate(report.note_cells, start=1):
        note_of.setdefault(key, []).append(number)
    rows = []
    for layout, row, setting in report.rows():
        own = report.cells[
            (report.cells["layout"] == layout) & (report.cells["row"] == row) & (report.cells["setting"] == setting)
        ]
        paper = report.published[
            (report.published["layout"] == layout)
            & (report.published["row"] == row)
            & (report.published["setting"] == setting)
        ]
        label = row_label(own.iloc[0])
        shown = f"{label} [{setting}]" if report.cells["setting"].nunique() > 1 else label
        cells = []
        for method in methods:
            mine = own[own["method"] == method]
            source = mine if len(mine) else paper[paper["method"] == method]
            if source.empty:
                cells.append(("", False, ""))
                continue
            marks = ",".join(map(str, note_of.get((method, label, setting), [])))
            bold = bool(mine["bold"].any()) if len(mine) else False
            cells.append((cell_text(source), bold, marks))
        rows.append((shown, cells))
    return ["Task" if report.layout == "task" else "Row", *methods], rows


def to_markdown(report: Report) -> str:
    header, rows = _grid(report)
    lines = [f"**{report.layout.capitalize()} table.** {report.caption}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" + "---:|" * (len(header) - 1))
    for label, cells in rows:
        texts = []
        for text, bold, marks in cells:
            text = f"**{text}**" if bold and text else text
            texts.append(text + (f" [{marks}]" if marks else ""))
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    if report.notes:
        lines.append("")
        lines += [f"[{i}] {note}" for i, note in enumerate(report.notes, start=1)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    PM: r"$\pm$",
    ARROW: r"$\to$",
    "–": "--",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table: special characters escaped, ± and → as math symbols."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def to_latex(report: Report) -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    header, rows = _grid(report)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + latex_escape(report.caption) + "}",
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for label, cells in rows:
        texts = []
        for text, bold, marks in cells:
            body = latex_escape(text)
            body = r"\textbf{" + body + "}" if bold and text else body
            texts.append(body + (f"$^{{{marks}}}$" if marks else ""))
        lines.append(latex_escape(label) + " & " + " & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if report.notes:
        lines.append(r"\par\smallskip\footnotesize")
        lines += [f"$^{{{i}}}$ {latex_escape(note)}\\\\" for i, note in enumerate(report.notes, start=1)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_latex_document(report: Report) -> str:
    """A complete document around the table, for a quick `pdflatex report.tex`."""
    return (
        "\\documentclass{article}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n\\usepackage{booktabs}\n"
        "\\begin{document}\n" + to_latex(report) + "\\end{document}\n"
    )


def write(report: Report, out: Path, formats: list[str], stem: str | None = None) -> list[Path]:
    """Write ``report`` in each format to ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"report-{report.layout}"
    render = {"csv": to_csv, "md": to_markdown, "latex": to_latex_document}
    written = []
    for fmt in formats:
        path = out / f"{stem}.{FORMATS[fmt]}"
        path.write_text(render[fmt](report))
        written.append(path)
    return written
