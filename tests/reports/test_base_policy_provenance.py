"""DSRL runs that steered different base policies (other bytes, even under the same file name) never share a table
cell; runs that steered none keep the provenance they had before base policies were recorded."""

from __future__ import annotations

from flowsteer.reports.load import provenance_key

PROTOCOL = {"dataset": {"source": "official"}, "versions": {"ogbench": "1.2.2"}, "success_timing": "pre"}


def steering(sha256: str) -> dict:
    return PROTOCOL | {"base_policy": {"file": "/data/base.pt", "sha256": sha256, "framework": "torch"}}


def test_runs_steering_different_base_policy_files_have_different_provenance() -> None:
    assert provenance_key(steering("a" * 64)) != provenance_key(steering("b" * 64))


def test_runs_steering_the_same_base_policy_file_share_provenance() -> None:
    assert provenance_key(steering("a" * 64)) == provenance_key(steering("a" * 64))


def test_runs_steering_different_base_runs_have_different_provenance() -> None:
    first = PROTOCOL | {"base_policy": {"run_id": "flow_bc-x", "arrays_sha256": "c" * 64}}
    second = PROTOCOL | {"base_policy": {"run_id": "flow_bc-x", "arrays_sha256": "d" * 64}}
    assert provenance_key(first) != provenance_key(second)


def test_a_run_without_a_base_policy_keeps_its_provenance() -> None:
    assert "base_policy" not in provenance_key(PROTOCOL)
