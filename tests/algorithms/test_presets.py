"""Presets as data: per-dataset values, and the fallbacks no paper sources, which runs record."""

from __future__ import annotations

import pytest

from flowsteer.algorithms import ALGORITHMS, make_config
from flowsteer.algorithms.presets import (
    OFFLINE,
    OFFLINE_TO_ONLINE,
    OFFLINE_TO_ONLINE_UNVERIFIED,
    UNSOURCED,
    task_hyperparameters,
    unsourced_note,
)

ANTSOCCER = "antsoccer-arena-navigate-singletask-task4-v0"


def test_every_unsourced_fallback_names_a_registered_algorithm_whose_preset_it_describes():
    for (dataset, algo), note in UNSOURCED.items():
        assert algo in ALGORITHMS, (dataset, algo)
        assert algo in OFFLINE[dataset], f"{dataset}/{algo}: a note without a preset value"
        assert "uses" in note, f"{dataset}/{algo}: the note must say what is used instead: {note!r}"


@pytest.mark.parametrize("algo", sorted({algo for _, algo in UNSOURCED}))
def test_antsoccer_offline_takes_antmaze_large_values_and_says_so(algo):
    values = task_hyperparameters(algo, ANTSOCCER)
    large = task_hyperparameters(algo, "antmaze-large-navigate-singletask-task1-v0")
    assert {k: values[k] for k in OFFLINE["antsoccer-arena-navigate"][algo]} == {
        k: large[k] for k in OFFLINE["antsoccer-arena-navigate"][algo]
    }
    assert values["discount"] == 0.995  # antsoccer keeps its own γ
    assert "antmaze-large" in unsourced_note(algo, ANTSOCCER)


def test_a_sourced_preset_has_no_note():
    assert unsourced_note("fql", ANTSOCCER) is None  # α = 10 is in the FQL README
    assert unsourced_note("iql", "cube-single-play-singletask-task2-v0") is None
    # Table 7 tuned IQL on antsoccer for offline-to-online: that value replaces the offline fallback.
    assert unsourced_note("iql", ANTSOCCER, "offline-to-online") is None
    assert make_config("iql", ANTSOCCER, setting="offline-to-online").alpha == 1.0


def test_offline_to_online_notes_name_registered_algorithms_on_table_7_datasets():
    for (dataset, algo), note in OFFLINE_TO_ONLINE_UNVERIFIED.items():
        assert algo in ALGORITHMS and dataset in OFFLINE_TO_ONLINE, (dataset, algo)
        assert note, (dataset, algo)


def test_an_offline_to_online_run_records_the_reading_of_its_unverified_preset():
    assert "Lagrange target gap" in unsourced_note("calql", ANTSOCCER, "offline-to-online")
    assert "fixed CQL weight" in unsourced_note("calql", "cube-double-play-singletask-task2-v0", "offline-to-online")
    # Offline, Cal-QL has no Table 6 row at all: nothing was filled in, so there is nothing to note.
    assert unsourced_note("calql", "cube-double-play-singletask-task2-v0") is None
