"""Fixtures of the algorithm tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import `algo_helpers` by name (importlib mode)

from algo_helpers import random_transitions

from flowsteer.algorithms import to_device_dataset


@pytest.fixture
def batch() -> dict:
    """Eight random transitions on the device, with `next_actions`."""
    return to_device_dataset(random_transitions(8))


@pytest.fixture
def dataset() -> dict:
    """Two hundred random transitions on the device."""
    return to_device_dataset(random_transitions(200, seed=1))
