"""`flowsteer base-policy train`: writes a file the loader reads; refuses what it cannot do before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowsteer.cli import EXIT_USAGE, main
from flowsteer.policies.torch_policy import file_sha256, load_torch_policy

TASK = "cube-single-play-singletask-task2-v0"


def _args(out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "base-policy", "train", "--framework", "torch", "--task", TASK, "--steps", "20", "--out", str(out),
        "--hidden-dims", "32,32,32", "--batch-size", "32", "--source", "generated", "--episodes", "4",
        "--episode-steps", "201", "--cache-dir", str(cache), "--quiet", *extra,
    ]  # fmt: skip


def test_cli_writes_a_policy_file_the_loader_reads(smoke_cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "policy.pt"
    assert main(_args(out, smoke_cache, "--action-chunk", "2")) == 0
    policy = load_torch_policy(out)
    assert (policy.info.action_chunk, policy.metadata.trained["task"], policy.metadata.trained["steps"]) == (
        2,
        TASK,
        20,
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and file_sha256(out) in printed and "final loss" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["policy.pt"]  # no temporary file left beside it


def test_cli_refuses_to_overwrite_an_existing_file(smoke_cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "policy.pt"
    out.write_bytes(b"an earlier policy")
    assert main(_args(out, smoke_cache)) == EXIT_USAGE
    error = capsys.readouterr().err
    assert "exists" in error and "--force" in error
    assert out.read_bytes() == b"an earlier policy"


def test_cli_refuses_a_framework_other_than_torch(smoke_cache: Path, tmp_path: Path, capsys) -> None:
    args = _args(tmp_path / "policy.pt", smoke_cache)
    args[args.index("torch")] = "jax"
    assert main(args) == EXIT_USAGE
    assert "--framework jax" in capsys.readouterr().err
    assert not (tmp_path / "policy.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cli_refuses_a_gpu_request_without_a_gpu_before_loading_data(tmp_path: Path, capsys) -> None:
    out = tmp_path / "policy.pt"
    assert main(_args(out, tmp_path / "no-cache", "--device", "cuda")) == EXIT_USAGE  # an empty cache: never read
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hidden-dims", "64,32"], "odd number of equal widths"),
        (["--ddim-steps", "30"], "ddim_steps must be in 1"),
        (["--action-chunk", "0"], "must be >= 1"),
    ],
)
def test_cli_refuses_trainer_settings_before_loading_data(tmp_path: Path, capsys, flags, message) -> None:
    out = tmp_path / "policy.pt"
    assert main(_args(out, tmp_path / "no-cache", *flags)) == EXIT_USAGE  # an empty cache: never read
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "no-cache").exists()
