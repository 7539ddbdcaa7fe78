"""Published numbers (FQL and DSRL papers) beside a user's own, for the same algorithm, row and phase.

The table ships as package data (data/published.csv): numbers transcribed from the papers' tables, each row naming
its paper and table in its `source` column (docs/algorithms.md#reporting-protocol). It holds
per-task rows ("default task": the DSRL paper's offline table, the FQL paper's Table 4) and category rows
("5 tasks": the FQL paper's Table 2). Published cells are data: never bold, never part of a row's best.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import pandas as pd

from flowsteer.reports.aggregate import OFFLINE, ONLINE

# flowsteer algorithm -> the names its column has in the papers' tables (data/published.csv); the first names the
# "(paper)" column. flowsteer's BC is the Gaussian BC of the FQL paper (the DSRL paper calls it BC-gaussian);
# flow_bc is the flow policy that DSRL steers (the DSRL paper's "BC-flow"); the DSRL paper's offline OGBench
# table ran DSRL-NA.
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
# Registered algorithms that no transcribed table reports, and why (tests check that every registered algorithm
# is in exactly one of PAPER_NAMES and this).
NO_PUBLISHED: dict[str, str] = {
    "dsrl_sac": "the DSRL paper's offline OGBench table ran DSRL-NA: DSRL-SAC learns from noise-labelled online "
    "transitions only, so it has no offline number",
    "calql": "data/published.csv transcribes the FQL paper's offline-to-online table for FQL, IFQL and RLPD only",
    "bfn": "data/published.csv does not yet hold the Q-chunking paper's numbers (QC, BFN)",
}
_PHASES = {
    "offline": ("offline", OFFLINE),
    "offline-to-online: offline 1M": ("offline-to-online", OFFLINE),
    "offline-to-online: online +1M": ("offline-to-online", ONLINE),
}


@cache
def published() -> pd.DataFrame:
    """The published table with flowsteer's row keys: layout (task | category), row, setting, phase."""
    with files("flowsteer.reports").joinpath("data/published.csv").open() as handle:
        table = pd.read_csv(handle)
    table = table[table["setting"].isin(_PHASES)].copy()
    table["layout"] = ["task" if scope == "default task" else "category" for scope in table["scope"]]
    table["row"] = table["task"].where(table["layout"] == "task", table["dataset"])
    table["setting"], table["phase"] = zip(*(_PHASES[s] for s in table["setting"]), strict=True)
    return table.reset_index(drop=True)


def published_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Published numbers for the (algorithm, layout, row, setting, phase) of ``cells``.

    One column per algorithm of ``cells`` that a paper reports for at least one of its rows; an algorithm or
    task no paper reports gets no column (and no row).
    """
    table = published()
    keys = cells[["algorithm", "layout", "row", "setting", "phase"]].drop_duplicates().copy()
    keys["paper_name"] = keys["algorithm"].map(lambda algorithm: PAPER_NAMES.get(algorithm, ()))
    keys = keys.explode("paper_name").dropna(subset=["paper_name"])
    merged = keys.merge(
        table.rename(columns={"algorithm": "paper_name"}),
        on=["paper_name", "layout", "row", "setting", "phase"],
    )
    merged["method"] = [PAPER_NAMES[algorithm][0] + " (paper)" for algorithm in merged["algorithm"]]
    columns = ["layout", "row", "method", "algorithm", "setting", "phase", "mean", "std", "source", "unit"]
    return merged[columns].reset_index(drop=True)
