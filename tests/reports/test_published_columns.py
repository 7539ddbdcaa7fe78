"""Every registered algorithm shows its published column beside its own, or says why it has none; every published
number belongs to one protocol and stands only beside runs of that protocol."""

from __future__ import annotations

import pytest

from flowsteer.algorithms.registry import ALGORITHMS
from flowsteer.reports.published import NO_PUBLISHED, PROTOCOLS, published, published_cells


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_registered_algorithm_is_named_by_a_protocol_or_says_why_not(algo):
    named = [key for key, protocol in PROTOCOLS.items() if algo in protocol.names]
    assert bool(named) != (algo in NO_PUBLISHED), f"{algo}: map it to its paper names or give a reason"
    if algo in NO_PUBLISHED:
        assert NO_PUBLISHED[algo].strip()


@pytest.mark.parametrize(("key", "column"), [(k, c) for k, p in PROTOCOLS.items() for c in p.names])
def test_each_published_row_of_a_column_appears_beside_it(key, column):
    protocol = PROTOCOLS[key]
    table = published()
    rows = table[(table["protocol"] == key) & table["algorithm"].isin(protocol.names[column])]
    assert len(rows), f"{column}: no row of protocol {key} in published.csv"
    cells = rows[["layout", "row", "setting", "phase", "action_chunk", "sparse_reward"]].assign(algorithm=column)
    shown = published_cells(cells, protocol)
    assert len(shown) == len(rows)  # every task and category row, of every paper that reports it
    assert shown["method"].unique().tolist() == [f"{protocol.names[column][0]} (paper)"]


@pytest.mark.parametrize("key", list(PROTOCOLS))
def test_every_method_of_a_protocol_s_rows_is_mapped(key):
    mapped = {name for names in PROTOCOLS[key].names.values() for name in names}
    table = published()
    assert set(table.loc[table["protocol"] == key, "algorithm"]) <= mapped


def test_every_row_names_its_source_and_a_known_protocol():
    table = published()
    assert set(table["protocol"]) == set(PROTOCOLS)
    assert table["source"].str.len().min() > 0
    sources = {key: set(table.loc[table["protocol"] == key, "source"].str.split(" ").str[0]) for key in PROTOCOLS}
    assert sources == {"fql": {"DSRL", "FQL"}, "qc": {"QC"}, "qam": {"QAM"}}
