"""A damaged dataset copy is reported as damaged by every `flowsteer data` command, and `--force` rebuilds it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flowsteer.cli import main
from flowsteer.datasets.generate import GenerationSpec

CUBE = "cube-single-play-v0"


def _damaged_cache(tmp_path: Path, smoke_dir: Path, damage: str) -> Path:
    cache = tmp_path / "cache"
    copy = cache / "ogbench" / smoke_dir.name
    shutil.copytree(smoke_dir, copy)
    if damage == "truncated npz":
        os.truncate(copy / "train.npz", 3000)
    else:
        (copy / "provenance.json").unlink()
    return cache


@pytest.mark.parametrize("damage", ["truncated npz", "no provenance"])
def test_verify_reports_a_damaged_generated_copy_and_fails(tmp_path, smoke_dir, capsys, monkeypatch, damage) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = _damaged_cache(tmp_path, smoke_dir, damage)
    assert main(["data", "verify", "--cache-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert f"{CUBE}  generated" in out and "DAMAGED (" in out and "rebuild it with data generate --force" in out
    assert "0 of 1 file(s) passed; 1 failed" in out
    assert main(["data", "verify", "cube-single-play", "--cache-dir", str(cache)]) == 1


def test_list_and_info_show_a_damaged_copy_instead_of_hiding_it(tmp_path, smoke_dir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = _damaged_cache(tmp_path, smoke_dir, "truncated npz")
    assert main(["data", "list", "--cache-dir", str(cache)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(CUBE))
    assert "generated (DAMAGED)" in row and "not a readable .npz" in row
    assert main(["data", "info", "cube-single-play", "--cache-dir", str(cache)]) == 0
    assert "generated  DAMAGED:" in capsys.readouterr().out


def test_generate_force_rebuilds_a_damaged_copy(tmp_path, smoke_dir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = _damaged_cache(tmp_path, smoke_dir, "no provenance")
    spec = GenerationSpec(CUBE, episodes=4, seed=0, episode_steps=201)
    args = ["data", "generate", CUBE, "--episodes", "4", "--episode-steps", "201", "--cache-dir", str(cache), "--quiet"]
    assert main(args) == 2
    assert "cannot be trusted. Rebuild it: flowsteer data generate" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    rebuilt = cache / "ogbench" / spec.cache_key
    assert (rebuilt / "provenance.json").exists()
    assert (rebuilt / "train.npz").read_bytes() == (smoke_dir / "train.npz").read_bytes()  # same seed, same bytes
    assert main(["data", "verify", "--cache-dir", str(cache)]) == 0


def test_a_checksum_list_that_is_not_text_is_one_clear_error(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    official = tmp_path / "official"
    official.mkdir()
    (official / "SHA256SUMS").write_bytes(b"\xff\xfe binary")
    (official / f"{CUBE}.npz").write_bytes(b"x")
    assert main(["data", "verify", "--data-dir", str(official)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsteer: error:") and "SHA256SUMS is not a checksum list (not UTF-8 text)" in err


def test_writing_a_manifest_where_it_cannot_be_written_is_one_clear_error(
    tmp_path, smoke_dir, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    official = tmp_path / "official"
    official.mkdir()
    shutil.copy(smoke_dir / "train.npz", official / f"{CUBE}.npz")
    shutil.copy(smoke_dir / "train-val.npz", official / f"{CUBE}-val.npz")
    (official / f".SHA256SUMS.tmp-{os.getpid()}").mkdir()  # the manifest's scratch file cannot be created
    assert main(["data", "verify", "--data-dir", str(official), "--write-manifest"]) == 2
    err = capsys.readouterr().err
    assert "flowsteer: error: cannot write" in err and "without --write-manifest to only check" in err
