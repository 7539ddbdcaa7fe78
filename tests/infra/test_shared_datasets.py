"""Datasets placed once on shared storage are checked by checksum before a sweep starts: official files against
the SHA256SUMS manifest `flowsteer data verify --write-manifest` records, generated copies against their
provenance. A changed or damaged file stops the sweep before any trial."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from flowsteer.cli import main
from flowsteer.datasets.errors import CorruptDatasetError
from flowsteer.datasets.store import MANIFEST_FILE, TRAIN_FILE, VAL_FILE, resolve
from flowsteer.sweeps.cluster import local_temp_dir
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep

pytestmark = pytest.mark.integration  # real sweeps and runs on a shared dataset copy

DATASET = "cube-single-play-v0"


def _damage(path: Path) -> None:
    """Flip one byte in the middle: headers still read, the content (and its sha256) changed."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(autouse=True)
def _no_home_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Official files in this machine's ~/.ogbench/data are not part of these tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def shared_official(tmp_path: Path, smoke_dir: Path) -> Path:
    """A shared data directory holding cube-single's files under their official names."""
    directory = tmp_path / "shared" / "ogbench"
    directory.mkdir(parents=True)
    shutil.copy(smoke_dir / TRAIN_FILE, directory / f"{DATASET}.npz")
    shutil.copy(smoke_dir / VAL_FILE, directory / f"{DATASET}-val.npz")
    return directory


def test_verify_writes_a_manifest_that_sha256sum_accepts_and_resolve_checks(shared_official, capsys):
    assert main(["data", "verify", "--data-dir", str(shared_official)]) == 1  # no manifest yet: not checked
    assert "no manifest entry" in capsys.readouterr().out
    assert main(["data", "verify", "--data-dir", str(shared_official), "--write-manifest"]) == 0
    manifest = shared_official / MANIFEST_FILE
    assert sorted(line.split()[1] for line in manifest.read_text().splitlines()) == [
        f"{DATASET}-val.npz",
        f"{DATASET}.npz",
    ]
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST_FILE], cwd=shared_official, check=True)
    assert main(["data", "verify", "--data-dir", str(shared_official)]) == 0
    assert resolve(DATASET, data_dir=shared_official, source="official").source == "official"


def test_a_damaged_official_file_stops_the_sweep_before_any_trial(shared_official, write_sweep, capsys):
    assert main(["data", "verify", "--data-dir", str(shared_official), "--write-manifest"]) == 0
    _damage(shared_official / f"{DATASET}-val.npz")
    with pytest.raises(CorruptDatasetError, match=r"-val\.npz has sha256 .* was recorded for it"):
        resolve(DATASET, data_dir=shared_official, source="official")
    assert main(["data", "verify", "--data-dir", str(shared_official)]) == 1
    assert "MISMATCH" in capsys.readouterr().out

    data = {"source": "official", "data_dir": str(shared_official)}
    spec = load_sweep(write_sweep("damaged", run={"data": data}))
    with pytest.raises(CorruptDatasetError):
        run_sweep(spec, write=lambda line: None)
    assert not spec.runs_dir.exists() or not any(spec.runs_dir.iterdir())
    assert not local_temp_dir(spec.directory).exists()  # Ray never started


def test_a_file_missing_from_the_manifest_is_refused(shared_official):
    (shared_official / MANIFEST_FILE).write_text("0" * 64 + "  some-other-file.npz\n")
    with pytest.raises(CorruptDatasetError, match="is not listed in"):
        resolve(DATASET, data_dir=shared_official, source="official")


def test_a_damaged_generated_copy_is_refused_and_verify_names_it(tmp_path, smoke_cache, smoke_dir, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(smoke_cache, cache)
    copy = cache / smoke_dir.relative_to(smoke_cache)
    args = dict(cache_dir=cache, source="generated", episodes=4, episode_steps=201, generate=False)
    assert resolve(DATASET, **args).source == "generated"
    assert main(["data", "verify", "--cache-dir", str(cache), "--data-dir", str(tmp_path / "none")]) == 0
    _damage(copy / TRAIN_FILE)
    with pytest.raises(CorruptDatasetError, match=r"nothing was started\. Rebuild it: flowsteer data generate"):
        resolve(DATASET, **args)
    assert main(["data", "verify", "--cache-dir", str(cache), "--data-dir", str(tmp_path / "none")]) == 1
    assert "MISMATCH (regenerate it)" in capsys.readouterr().out
