"""Every registered algorithm shows its published column beside its own, or says why it has none."""

from __future__ import annotations

import pytest

from flowsteer.algorithms.registry import ALGORITHMS
from flowsteer.reports.published import NO_PUBLISHED, PAPER_NAMES, published, published_cells


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_each_published_row_of_a_registered_algorithm_appears_beside_it(algo):
    assert (algo in PAPER_NAMES) != (algo in NO_PUBLISHED), f"{algo}: map it to its paper names or give a reason"
    if algo in NO_PUBLISHED:
        assert NO_PUBLISHED[algo].strip()
        return
    table = published()
    assert set(PAPER_NAMES[algo]) <= set(table["algorithm"]), f"{algo}: a paper name is not in published.csv"
    rows = table[table["algorithm"].isin(PAPER_NAMES[algo])]
    cells = rows[["layout", "row", "setting", "phase"]].assign(algorithm=algo)
    shown = published_cells(cells)
    assert len(shown) == len(rows)  # every task and category row, of every paper that reports it
    assert shown["method"].unique().tolist() == [f"{PAPER_NAMES[algo][0]} (paper)"]


def test_every_algorithm_of_the_published_table_is_mapped():
    mapped = {name for names in PAPER_NAMES.values() for name in names}
    assert set(published()["algorithm"]) <= mapped
