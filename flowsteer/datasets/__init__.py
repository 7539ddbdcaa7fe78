"""OGBench single-task data without the dataset server: catalog, generation, resolution, loading."""

from flowsteer.datasets import headless  # noqa: F401  (before anything imports ogbench)
from flowsteer.datasets.catalog import DATASETS, DatasetInfo, TaskRef, get_dataset, parse_task
from flowsteer.datasets.errors import (
    CorruptDatasetError,
    DatasetError,
    MissingOfficialDataError,
    NotWritableError,
    UnknownNameError,
)
from flowsteer.datasets.generate import GenerationSpec
from flowsteer.datasets.load import OfflineTask, load_task, make_env
from flowsteer.datasets.store import DatasetFiles, resolve

__all__ = [
    "DATASETS",
    "CorruptDatasetError",
    "DatasetError",
    "DatasetFiles",
    "DatasetInfo",
    "GenerationSpec",
    "MissingOfficialDataError",
    "NotWritableError",
    "OfflineTask",
    "TaskRef",
    "UnknownNameError",
    "get_dataset",
    "load_task",
    "make_env",
    "parse_task",
    "resolve",
]
