"""The lock files pin whole environments by hash, and agree with the requirements and with one another.

requirements-dev.lock is what scripts/setup.sh installs (the environment the tests run in); the images' locks
keep its versions, so a cluster runs the code with the packages it was tested with. `bash scripts/lock.sh`
writes them all; these tests catch a lock left behind by an edit of the requirements.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).parents[2]
DEV_LOCK = REPO / "requirements-dev.lock"
CPU_LOCK = REPO / "infra" / "docker" / "requirements-cpu.lock"
GPU_LOCK = REPO / "infra" / "docker" / "requirements-gpu.lock"
MLFLOW_LOCK = REPO / "infra" / "mlflow" / "requirements.lock"
IMAGE_LOCKS = [CPU_LOCK, GPU_LOCK, MLFLOW_LOCK]

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of sha256 hashes)} of a lock file."""
    entries: dict[str, tuple[str, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := _ENTRY.match(line):
            name = canonicalize_name(match["name"])
            entries[name] = (match["version"], 0)
        elif name and (hashes := _HASH.findall(line)):
            version, count = entries[name]
            entries[name] = (version, count + len(hashes))
        elif not line.startswith(" "):
            name = None
    return entries


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements file, following its -r includes."""
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


@pytest.mark.parametrize("lock", [DEV_LOCK, *IMAGE_LOCKS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_locked_package_is_checked_by_hash(lock: Path) -> None:
    entries = locked(lock)
    assert len(entries) > 20, f"{lock} holds {len(entries)} packages; is it a lock file?"
    unhashed = sorted(name for name, (_, hashes) in entries.items() if hashes == 0)
    assert not unhashed, f"{lock}: no hash for {unhashed}"


def test_the_dev_lock_holds_every_requirement_at_its_pin() -> None:
    """An edit of requirements*.txt without `bash scripts/lock.sh` fails here, not in a later install."""
    entries = locked(DEV_LOCK)
    for requirement in requirements(REPO / "requirements-dev.txt"):
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is missing from requirements-dev.lock: run bash scripts/lock.sh"
        version, _ = entries[name]
        assert requirement.specifier.contains(version), f"{DEV_LOCK.name} has {name}=={version}, not {requirement}"


@pytest.mark.parametrize("lock", IMAGE_LOCKS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_images_keep_the_tested_versions(lock: Path) -> None:
    tested = locked(DEV_LOCK)
    differ = {name: (version, tested[name][0]) for name, (version, _) in locked(lock).items()
              if name in tested and tested[name][0] != version}  # fmt: skip
    assert not differ, f"{lock.name} (image, dev): {differ}"


def test_the_cluster_image_lock_holds_requirements_txt_and_ray_default() -> None:
    entries = locked(CPU_LOCK)
    for requirement in requirements(REPO / "requirements.txt"):
        assert canonicalize_name(requirement.name) in entries, requirement
    ray_default = [
        Requirement(r)
        for r in importlib.metadata.requires("ray") or []
        if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "default"})
    ]
    assert ray_default, "ray declares no 'default' extra"
    missing = [str(r) for r in ray_default if canonicalize_name(r.name) not in entries]
    assert not missing, f"ray[default] needs {missing}"


def test_the_gpu_lock_is_the_cpu_lock_plus_the_cuda_plugin() -> None:
    cpu, gpu = locked(CPU_LOCK), locked(GPU_LOCK)
    changed = {name: (version, gpu.get(name, ("absent",))[0]) for name, (version, _) in cpu.items()
               if gpu.get(name, ("absent",))[0] != version}  # fmt: skip
    assert not changed, f"(cpu, gpu): {changed}"
    added = set(gpu) - set(cpu)
    assert all(name.startswith(("jax-cuda12-", "nvidia-")) for name in added), added
    assert gpu["jax-cuda12-plugin"][0] == gpu["jaxlib"][0]  # the plugin is built for one jaxlib


def test_the_tracking_server_lock_has_mlflow_at_flowsteers_pin() -> None:
    (mlflow,) = [r for r in requirements(REPO / "requirements.txt") if r.name == "mlflow"]
    entries = locked(MLFLOW_LOCK)
    assert mlflow.specifier.contains(entries["mlflow"][0])
    assert "flask-wtf" in entries and "psycopg2-binary" in entries  # basic auth; the Postgres backend
