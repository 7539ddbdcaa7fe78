"""Published numbers beside a user's own, for the same algorithm, row and phase, under one protocol.

The table ships as package data (data/published.csv): numbers transcribed from the papers' tables and released
result files, each row naming its paper and table or file in its `source` column (docs/algorithms.md#reporting-
protocol). It holds per-task rows ("default task") and category rows ("5 tasks"). Published cells are data: never
bold, never part of a row's best.

A number belongs to the protocol its paper ran (the `protocol` column), and one method on one task has different
numbers under different protocols (FQL in the FQL paper and QAM's chunked FQL with sparse rewards), so a report
shows the numbers of one protocol only:

- ``fql``: the FQL paper (offline Tables 2 and 4) and the DSRL paper's offline OGBench table: single actions, the
  environments' own rewards, 1M offline steps (+1M online).
- ``qc``: Q-chunking (Li, Zhou, Levine 2025): 1M offline + 1M online steps, H = 5 for QC and the QC- variants,
  sparse rewards on scene and puzzle-3x3.
- ``qam``: QAM (Li, Levine 2026): 1M offline + 500K online steps, H = 5 on manipulation and 1 on locomotion,
  sparse rewards on scene and puzzle, 10 critics.

Within a protocol a number stands beside a cell only when the cell's runs have the action chunk and the reward
form of the published runs (the `action_chunk` and `sparse_reward` columns): a single-step run never meets a
chunked number.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import pandas as pd

from flowsteer.reports.aggregate import OFFLINE, ONLINE
from flowsteer.reports.load import ReportError, ReportWarning

# flowsteer algorithm -> the names its column has in the FQL and DSRL papers' tables (data/published.csv); the first
# names the "(paper)" column. flowsteer's BC is the Gaussian BC of the FQL paper (the DSRL paper calls it
# BC-gaussian); flow_bc is the flow policy that DSRL steers (the DSRL paper's "BC-flow"); the DSRL paper's offline
# OGBench table ran DSRL-NA.
PAPER_NAMES: dict[str, tuple[str, ...]] = {
    "bc": ("BC-gaussian", "BC"),
    "flow_bc": ("BC-flow",),
    "iql": ("IQL",),
    "rebrac": ("ReBRAC",),
    "idql": ("IDQL",),
    "ifql": ("IFQL",),
    "fql": ("FQL",),
    "dsrl_na": ("DSRL",),
    "fawac": ("FAWAC",),
    "fbrac": ("FBRAC",),
    "srpo": ("SRPO",),
    "cac": ("CAC",),
    "rlpd": ("RLPD",),
}
# Q-chunking's columns (ColinQiyangLi/qc README.md): a run's column is QC's name for its variant
# (flowsteer.reports.variants): bfn at H = 5 is QC, at H = 1 BFN; fql at H = 5 is QC-FQL; rlpd at H = 5 RLPD-AC.
QC_NAMES: dict[str, tuple[str, ...]] = {
    "qc": ("QC",),
    "qc-fql": ("QC-FQL",),
    "bfn": ("BFN",),
    "fql": ("FQL",),
    "qc-ifql": ("QC-IFQL",),
    "ifql": ("IFQL",),
    "rebrac": ("ReBRAC",),
    "iql": ("IQL",),
    "rlpd": ("RLPD",),
    "rlpd-ac": ("RLPD-AC",),
}
# QAM's baselines that flowsteer has (ColinQiyangLi/qam experiments/reproduce.py): QAM names every method plainly, at
# the action chunk of its domain, so a run's column is its algorithm.
QAM_NAMES: dict[str, tuple[str, ...]] = {
    "fql": ("FQL",),
    "rebrac": ("ReBRAC",),
    "dsrl_na": ("DSRL",),
    "ifql": ("IFQL",),
    "fbrac": ("FBRAC",),
    "fawac": ("FAWAC",),
    "rlpd": ("RLPD",),
}
# Registered algorithms that no transcribed table reports, and why (tests check that every registered algorithm
# is named by a protocol or listed here).
NO_PUBLISHED: dict[str, str] = {
    "dsrl_sac": "the DSRL paper's offline OGBench table ran DSRL-NA: DSRL-SAC learns from noise-labelled online "
    "transitions only, so it has no offline number",
    "calql": "data/published.csv transcribes the FQL paper's offline-to-online table for FQL, IFQL and RLPD only",
}


@dataclass(frozen=True)
class Protocol:
    """The protocol a report's published numbers follow: its papers, their column names, and whether a run's
    column is QC's name for its chunked variant (qc, fql) or its algorithm (qam)."""

    key: str
    words: str  # for the caption
    names: dict[str, tuple[str, ...]]
    chunk_names: bool


PROTOCOLS: dict[str, Protocol] = {
    "fql": Protocol("fql", "the FQL paper (Park, Li, Levine 2025) and the DSRL paper (Wagenmaker et al. 2025): "
                    "single actions, the environments' own rewards", PAPER_NAMES, True),
    "qc": Protocol("qc", "Q-chunking (Li, Zhou, Levine 2025): 1M offline + 1M online steps, action chunks of 5 for "
                   "QC and the QC- variants, sparse rewards on scene and puzzle-3x3", QC_NAMES, True),
    "qam": Protocol("qam", "QAM (Li, Levine 2026): 1M offline + 500K online steps, action chunks of 5 on "
                    "manipulation and 1 on locomotion, sparse rewards on scene and puzzle, 10 critics, 12 seeds",
                    QAM_NAMES, False),
}  # fmt: skip
CHOICES = ("auto", *PROTOCOLS)

_PHASES = {
    "offline": ("offline", OFFLINE),
    "offline-to-online: offline 1M": ("offline-to-online", OFFLINE),
    "offline-to-online: online +1M": ("offline-to-online", ONLINE),
    "offline-to-online: online +500K": ("offline-to-online", ONLINE),
}
MATCHED = ["layout", "row", "setting", "phase", "action_chunk", "sparse_reward"]


@cache
def published() -> pd.DataFrame:
    """The published table with flowsteer's row keys: protocol, layout (task | category), row, setting, phase."""
    with files("flowsteer.reports").joinpath("data/published.csv").open() as handle:
        table = pd.read_csv(handle)
    table = table[table["setting"].isin(_PHASES)].copy()
    table["layout"] = ["task" if scope == "default task" else "category" for scope in table["scope"]]
    table["row"] = table["task"].where(table["layout"] == "task", table["dataset"])
    table["setting"], table["phase"] = zip(*(_PHASES[s] for s in table["setting"]), strict=True)
    return table.reset_index(drop=True)


def report_protocol(tidy: pd.DataFrame, choice: str = "auto", *, warn: bool = True) -> Protocol | None:
    """The protocol whose numbers a report shows: ``choice``, or with "auto" the FQL paper's when no run acts in
    chunks or learns from sparse rewards. Chunked or sparse runs follow QC's or QAM's protocol, and the runs cannot
    tell which: "auto" shows no published numbers then, and warns how to name it."""
    if choice not in CHOICES:
        raise ReportError(f"Unknown published protocol {choice!r}; choose from {', '.join(CHOICES)}.")
    if choice != "auto":
        return PROTOCOLS[choice]
    if (tidy["action_chunk"] > 1).any() or (tidy["sparse_reward"] > 0).any():
        if not warn:
            return None
        warnings.warn(
            "runs act in chunks or learn from sparse rewards, as Q-chunking's and QAM's do: name the protocol of "
            "the published numbers to show beside them (flowsteer report --published qc or qam; report.published in "
            "a sweep file). None are shown.",
            ReportWarning,
            stacklevel=3,
        )
        return None
    return PROTOCOLS["fql"]


def with_column_names(tidy: pd.DataFrame, protocol: Protocol | None) -> pd.DataFrame:
    """The runs with each one's column name as its algorithm: QC's name for a chunked variant (qc-fql, qc, ...),
    except under QAM's protocol, which names every method plainly."""
    if protocol is not None and not protocol.chunk_names:
        return tidy
    return tidy.assign(algorithm=tidy["variant"])


def published_cells(cells: pd.DataFrame, protocol: Protocol | None) -> pd.DataFrame:
    """Published numbers of ``protocol`` for the (algorithm, layout, row, setting, phase, action chunk, sparse
    rewards) of ``cells``.

    One column per algorithm of ``cells`` that the protocol's papers report for at least one of its rows; an
    algorithm or task they do not report gets no column (and no row).
    """
    columns = ["layout", "row", "method", "algorithm", "setting", "phase", "mean", "std", "source", "unit"]
    if protocol is None:
        return pd.DataFrame(columns=columns)
    table = published()
    table = table[table["protocol"] == protocol.key]
    keys = cells[["algorithm", *MATCHED]].drop_duplicates().copy()
    keys["paper_name"] = keys["algorithm"].map(lambda algorithm: protocol.names.get(algorithm, ()))
    keys = keys.explode("paper_name").dropna(subset=["paper_name"])
    merged = keys.merge(table.rename(columns={"algorithm": "paper_name"}), on=["paper_name", *MATCHED])
    merged["method"] = [protocol.names[algorithm][0] + " (paper)" for algorithm in merged["algorithm"]]
    return merged[columns].reset_index(drop=True)
