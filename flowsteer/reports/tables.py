"""A report: the aggregated cells of one layout, the published numbers beside them, and its caption.

Layouts: ``task`` (one row per task), ``category`` (one row per dataset, its five tasks averaged per seed),
``published`` (task and category rows, each algorithm followed by the paper's number where one exists).
Rendering to CSV, Markdown and LaTeX lives in flowsteer.reports.writers; this module decides what the
table says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from flowsteer.reports.aggregate import OFFLINE, ONLINE, PAPER, Aggregation, category_cells, run_scores, task_cells
from flowsteer.reports.load import ReportError
from flowsteer.reports.published import Protocol, published_cells, report_protocol, with_column_names

LAYOUTS = ("task", "category", "published")
PM, ARROW, MISSING = "±", "→", "–"


@dataclass
class Report:
    """Everything a writer needs: cells (long, unrounded), published cells, caption and notes."""

    layout: str
    cells: pd.DataFrame
    published: pd.DataFrame
    caption: str
    agg: Aggregation
    notes: list[str] = field(default_factory=list)  # flags, numbered in cell order
    note_cells: list[tuple[str, str, str]] = field(default_factory=list)  # (method, row label, setting) per note

    def methods(self) -> list[str]:
        """Column order: the user's methods sorted, each followed by its paper column where one exists."""
        order = []
        for method in sorted(self.cells["method"].unique()):
            order.append(method)
            algorithm = self.cells.loc[self.cells["method"] == method, "algorithm"].iat[0]
            paper = self.published.loc[self.published["algorithm"] == algorithm, "method"].unique()
            order += [p for p in paper if p not in order]
        return order

    def rows(self) -> list[tuple[str, str, str]]:
        """(layout, row, setting) in table order: tasks by name, then categories."""
        keys = self.cells[["layout", "row", "setting"]].drop_duplicates()
        keys = keys.assign(order=keys["layout"].map({"task": 0, "category": 1}))
        keys = keys.sort_values(["setting", "order", "row"])
        return list(keys[["layout", "row", "setting"]].itertuples(index=False, name=None))


def build_report(
    tidy: pd.DataFrame, layout: str = "task", agg: Aggregation = PAPER, caption: str = "", published: str = "auto"
) -> Report:
    """Aggregate a tidy table (flowsteer.reports.load) into the report of ``layout``; ``caption`` opens the
    caption written from the protocol (say there what the numbers cannot: a reduced protocol, for instance).
    ``published``: the protocol whose published numbers the published layout shows (fql, qc, qam; "auto": see
    flowsteer.reports.published.report_protocol); it also names the columns of chunked runs."""
    if layout not in LAYOUTS:
        raise ReportError(f"Unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    protocol = report_protocol(tidy, published, warn=layout == "published")
    scores = run_scores(with_column_names(tidy, protocol), agg)
    parts = []
    if layout in ("task", "published"):
        parts.append(task_cells(scores, agg))
    if layout == "category":
        parts.append(category_cells(scores, agg))
    if layout == "published":  # category rows only where some method has a complete seed
        categories = category_cells(scores, agg)
        covered = categories.groupby("row")["n_seeds"].transform("max") > 0
        parts.append(categories[covered])
    cells = pd.concat(parts, ignore_index=True)
    paper = published_cells(cells, protocol if layout == "published" else None)
    report = Report(layout, cells, paper, protocol_caption(scores, agg, layout, caption, protocol), agg)
    flagged = [c for _, c in cells.iterrows() if c["flags"]]
    report.notes = [f"{c['method']}, {row_label(c)}: {c['flags']}" for c in flagged]
    report.note_cells = [(c["method"], row_label(c), c["setting"]) for c in flagged]
    return report


def row_label(cell: pd.Series | dict) -> str:
    """'cube-single-play task2 (*)' for a task row, 'cube-single-play (5 tasks)' for a category row."""
    if cell["layout"] == "category":
        return f"{cell['row']} (5 tasks)"
    category, task = cell["row"].removesuffix("-v0").split("-singletask-")
    return f"{category} {task}" + (" (*)" if cell.get("default_task") else "")


def _number(mean: float, std: float) -> str:
    if mean is None or math.isnan(mean):
        return MISSING
    if std is None or math.isnan(std):
        return f"{mean:.0f}"
    return f"{mean:.0f} {PM} {std:.0f}"


def cell_text(phases: pd.DataFrame) -> str:
    """The printed cell: integer percentages, '± std'; offline-to-online as 'x ± s → y ± t'."""
    by_phase = {p["phase"]: p for _, p in phases.iterrows()}
    parts = [_number(by_phase[p]["mean"], by_phase[p].get("std")) for p in (OFFLINE, ONLINE) if p in by_phase]
    return f" {ARROW} ".join(parts)


def _steps(values: pd.Series) -> str:
    return ", ".join(f"{int(v):,}" for v in sorted(values.unique()))


def protocol_caption(
    scores: pd.DataFrame, agg: Aggregation, layout: str, opening: str = "", published: Protocol | None = None
) -> str:
    """The protocol in words: steps, seeds, episodes, evaluation window, action chunks, dataset provenance, rules;
    after ``opening``, the user's own words, where given; the protocol of the published numbers."""
    runs = scores.drop_duplicates("run")
    seeds = sorted(runs["seed"].unique())
    settings = set(runs["setting"])
    n_tasks = runs["task"].nunique()
    text = [opening.strip()] if opening.strip() else []
    text.append(f"Success rate (%) on {n_tasks} OGBench single-task problem{'s' * (n_tasks != 1)}.")
    text.append(f"Offline training: {_steps(runs['offline_steps'])} gradient steps.")
    if "offline-to-online" in settings:
        o2o = runs[runs["setting"] == "offline-to-online"]
        text.append(
            f"Offline-to-online cells show the value at the end of the offline phase {ARROW} after "
            f"{_steps(o2o['online_steps'])} online environment steps."
        )
    if "offline" in settings:
        windows = scores.loc[(scores["setting"] == "offline") & (scores["incomplete"] == ""), "window"]
        steps = sorted({s for w in windows for s in json.loads(w)})
        text.append(
            f"Each run scores the mean success over its last {agg.last_k} evaluation(s)"
            + (f" (steps {', '.join(f'{s:,}' for s in steps)})." if steps else ".")
        )
    text.append(f"Each evaluation runs {_steps(runs['eval_episodes'])} episodes.")
    if (runs["action_chunk"] > 1).any():
        text.append(f"Action chunks of {_steps(runs['action_chunk'])} action(s) per policy call, executed open loop.")
    if (runs["sparse_reward"] > 0).any():
        sparse = sorted(runs.loc[runs["sparse_reward"] > 0, "category"].unique())
        text.append(f"Sparse rewards (-1 until every subtask is solved) on {', '.join(sparse)}.")
    consecutive = len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1))
    seed_text = f"{seeds[0]}-{seeds[-1]}" if consecutive else ", ".join(map(str, seeds))
    text.append(f"Mean {PM} std (ddof={agg.ddof}) over {len(seeds)} seed{'s' * (len(seeds) != 1)} ({seed_text}).")
    if layout in ("category", "published"):
        text.append("A category row averages each seed's five tasks first, then takes mean and std over seeds.")
    text.append(f"Bold: at or above {agg.bold_fraction:.0%} of the best mean in the row (unrounded).")
    if layout != "category":
        text.append("(*) marks the default task.")
    if layout == "published" and published is not None:
        text.append(f"Columns marked (paper) are the published numbers of {published.words}; never bold.")
    elif layout == "published":
        text.append("No published numbers: name the protocol they follow (qc or qam).")
    # Keys that differ only in what the words leave out (the commit, file checksums) read once.
    words = dict.fromkeys(_provenance_words(p) for p in sorted(runs["provenance"].unique()))
    text.append("Data: " + "; ".join(words) + ".")
    return " ".join(text)


def _provenance_words(key: str) -> str:
    words = dict(part.split("=", 1) for part in key.split(" "))
    source = words.get("data", "unknown")
    origin = "official OGBench datasets" if source == "official" else f"{source} datasets"
    if "generator" in words:
        generator = json.loads(words["generator"])
        origin = (
            f"datasets generated by flowsteer ({generator.get('episodes')} episodes, seed {generator.get('seed')}, "
            f"generator v{generator.get('generator_version')})"
        )
    reward = ", sparse reward (success - 1)" if words.get("reward") == "sparse" else ""
    return f"{origin}, ogbench {words.get('ogbench')}, jax {words.get('jax')}{reward}"
