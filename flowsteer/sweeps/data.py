"""The datasets of a sweep: which copy each trial will read, found before anything runs; checked by checksum,
and generated once on the driver when missing, in the order run_sweep needs (cheap checks first)."""

from __future__ import annotations

import os
from collections.abc import Callable

from flowsteer.datasets.errors import MissingOfficialDataError
from flowsteer.datasets.store import DatasetFiles, DatasetPlan, plan, resolve
from flowsteer.platform.spec import DataSpec
from flowsteer.sweeps.spec import SweepSpec

Writer = Callable[[str], None]


def plan_datasets(spec: SweepSpec) -> tuple[list[DatasetPlan], list[tuple[str, str]]]:
    """Which copy of every dataset the sweep will use, found without generating or hashing anything; and the
    datasets that cannot be had here (official files missing), with the message that says how to get them."""
    data = _data_spec(spec)
    plans, missing = [], []
    for info in spec.datasets():
        try:
            plans.append(plan(info.name, data_dir=data.data_dir, cache_dir=data.cache_dir, source=data.source,
                              episodes=data.episodes, seed=data.seed, episode_steps=data.episode_steps))  # fmt: skip
        except MissingOfficialDataError as exc:
            missing.append((info.name, str(exc)))
    return plans, missing


def refuse_missing(missing: list[tuple[str, str]]) -> None:
    """One error naming every dataset the sweep cannot have, before anything is generated or trained."""
    if len(missing) == 1:
        raise MissingOfficialDataError(missing[0][1])
    if missing:
        names = ", ".join(name for name, _ in missing)
        raise MissingOfficialDataError(f"{len(missing)} datasets of the sweep are not on this machine ({names}); "
                                       f"nothing was started. For the first: {missing[0][1]}")  # fmt: skip


def check_copies(spec: SweepSpec, plans: list[DatasetPlan], write: Writer = print) -> None:
    """Check every copy already on disk by checksum (official files against SHA256SUMS, generated ones against
    their provenance), before the cluster starts: a damaged file stops the sweep before any work."""
    for entry in plans:
        if entry.source != "generate":
            files = _resolve(spec, entry, generate=False)
            write(f"dataset {entry.info.name}: {files.provenance.get('source', '?')} copy in {files.train.parent}")


def generate_missing(spec: SweepSpec, plans: list[DatasetPlan], write: Writer = print) -> None:
    """Generate, once, on the driver, every dataset the sweep needs and the cache lacks (after the cluster check)."""
    for entry in plans:
        if entry.source == "generate":
            files = _resolve(spec, entry, generate=True)
            write(f"dataset {entry.info.name}: generated copy in {files.train.parent}")


def _resolve(spec: SweepSpec, entry: DatasetPlan, generate: bool) -> DatasetFiles:
    data = _data_spec(spec)
    return resolve(entry.info.name, data_dir=data.data_dir, cache_dir=data.cache_dir, source=data.source,
                   episodes=data.episodes, seed=data.seed, episode_steps=data.episode_steps, generate=generate,
                   workers=max(1, (os.cpu_count() or 1)), progress=True)  # fmt: skip


def _data_spec(spec: SweepSpec) -> DataSpec:
    """The data settings every trial shares (the sweep's run.data)."""
    return spec.data
