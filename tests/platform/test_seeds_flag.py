"""`flowsteer train --seeds`: the seeds of one group, written as ranges and single seeds."""

from __future__ import annotations

import argparse

import pytest

from flowsteer.cli import build_parser
from flowsteer.cli.train import parse_seeds


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("0-7", [0, 1, 2, 3, 4, 5, 6, 7]),
        ("0,3,5", [0, 3, 5]),
        ("0-3,8", [0, 1, 2, 3, 8]),
        ("4", [4]),
        ("9, 2-3", [9, 2, 3]),
    ],
)
def test_seeds_are_ranges_and_single_seeds_separated_by_commas(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a list of seeds: give ranges and seeds >= 0 separated by commas, e.g. 0-7, 0,3,5 or 0-3,8"),
        ("zero-7", "is not a list of seeds"),
        ("0,,2", "is not a list of seeds"),
        ("0-", "is not a list of seeds"),
        ("-1", "is not a list of seeds"),
        ("7-0", "'7-0' in '7-0' is no range of seeds: write LOW-HIGH with 0 <= LOW <= HIGH"),
        ("0-3,2", "'0-3,2' names seed 2 twice"),
    ],
)
def test_bad_seeds_are_refused_with_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse_seeds(text)
    assert message in str(caught.value)


def test_seeds_and_seed_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--seed", "1", "--seeds", "0-1"])
    assert "argument --seeds: not allowed with argument --seed" in capsys.readouterr().err
