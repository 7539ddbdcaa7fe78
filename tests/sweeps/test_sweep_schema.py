"""The sweep file's JSON Schema: kept current, and it accepts the examples and refuses what load_sweep refuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from flowsteer.sweeps.spec import sweep_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "sweep.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = sweep_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_one_the_code_generates() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == sweep_schema(), "regenerate it: flowsteer sweep --schema > docs/sweep.schema.json"


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_sweep_file_satisfies_the_schema(validator, example: Path, pending_example) -> None:
    if pending_example(example.name, learners=False):
        pytest.skip(pending_example(example.name, learners=False))
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(example.read_text()))]
    assert errors == []


@pytest.mark.parametrize(
    "values",
    [
        {"algorithms": ["fql"], "tasks": ["cube-single-play"], "nmae": "x"},  # unknown top-level field
        {"algorithms": ["fqll"], "tasks": ["cube-single-play"]},  # unknown algorithm
        {"algorithms": {"fql": {"gird": {}}}, "tasks": ["cube-single-play"]},  # unknown field of an algorithm
        {"algorithms": ["fql"], "tasks": ["cube-single-play"], "run": {"offline_step": 10}},  # unknown run field
        {"algorithms": ["fql"], "tasks": ["cube-single-play"], "seeds": [0, 0]},  # a seed twice
        {"algorithms": ["fql"], "tasks": [], "seeds": 2},  # no task
    ],
)
def test_the_schema_refuses_what_an_editor_should_underline(validator, values: dict) -> None:
    assert list(validator.iter_errors(values))


def test_the_schema_accepts_task_entries_and_run_settings_in_a_grid(validator) -> None:
    values = {
        "algorithms": {"fql": {"grid": {"alpha": [3, 10], "action_chunk": [1, 5]}}},
        "tasks": ["cube-double-play:default", {"select": ["scene-play:default"], "run": {"utd": 2},
                                               "hyperparameters": {"fql": {"alpha": 300}}}],
    }  # fmt: skip
    assert [e.message for e in validator.iter_errors(values)] == []
    values["tasks"][1]["run"] = {"offline_step": 10}
    assert list(validator.iter_errors(values))
