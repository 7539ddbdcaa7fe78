"""Runs with QC's sparse reward score other numbers than runs with OGBench's own reward: never one table cell."""

from __future__ import annotations

from flowsteer.reports.load import provenance_key

PROTOCOL = {"dataset": {"source": "official"}, "versions": {"ogbench": "1.2.2"}, "success_timing": "pre"}


def test_a_sparse_reward_run_has_another_provenance_than_a_plain_one() -> None:
    assert provenance_key(PROTOCOL | {"sparse_reward": True}) != provenance_key(PROTOCOL)


def test_a_plain_run_keeps_the_provenance_of_runs_recorded_before_the_option() -> None:
    assert provenance_key(PROTOCOL | {"sparse_reward": False}) == provenance_key(PROTOCOL)
