"""The container definitions install exactly the locked dependency sets: every pip install is a lock file
checked by hash (tests/infra/test_lock_files.py checks what the locks hold) or flowsteer itself, without its
dependencies."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
MLFLOW_DOCKERFILE = REPO / "infra" / "mlflow" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every `pip install` in the file's RUN steps."""
    commands = []
    for kind, args in instructions(path):
        if kind == "RUN":
            for part in re.split(r"&&|;", args):
                words = shlex.split(part)
                if words[:2] == ["pip", "install"]:
                    commands.append(words[2:])
    return commands


def copied(path: Path) -> dict[str, str]:
    """{file name in the image: source in the repository} of the file's COPY steps."""
    found = {}
    for kind, args in instructions(path):
        if kind == "COPY":
            *sources, target = [w for w in args.split() if not w.startswith("--")]
            for source in sources:
                found[Path(source).name if target.endswith("/") else target] = source
    return found


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, MLFLOW_DOCKERFILE], ids=lambda p: p.parent.name)
def test_every_pip_install_is_a_hash_checked_lock_or_flowsteer_itself(dockerfile: Path) -> None:
    installs = pip_installs(dockerfile)
    assert installs, "no pip install found"
    files = copied(dockerfile)
    for args in installs:
        if args == ["--no-deps", "."]:  # flowsteer itself, after its dependencies
            continue
        assert args[:2] == ["--require-hashes", "-r"] and len(args) == 3, args
        source = files.get(args[2]) or files.get(Path(args[2]).name)
        assert source and source.endswith(".lock") and (REPO / source).exists(), f"{args[2]} is not a copied lock"


def test_the_gpu_image_is_the_cpu_image_plus_its_own_lock() -> None:
    stages = [args.split() for kind, args in instructions(DOCKERFILE) if kind == "FROM"]
    assert [s[-1] for s in stages] == ["cpu", "gpu"] and stages[1][0] == "cpu"
    cpu_lock, gpu_lock = (args[-1] for args in pip_installs(DOCKERFILE) if args[0] == "--require-hashes")
    assert cpu_lock != gpu_lock


def test_the_image_copies_only_files_that_exist_and_the_context_keeps_them():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kind, args in instructions(DOCKERFILE):
        if kind == "COPY":
            sources = [w for w in args.split() if not w.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
                assert source.rstrip("/") in kept, f"{source} is excluded from the build context"
    for secret_like in (".env", ".venv", ".git", "mlflow.db", "sweeps", "runs"):
        assert secret_like not in kept
    assert next(line for line in ignore if not line.startswith("#")) == "*"  # deny by default


def test_the_image_runs_as_a_user_and_its_entrypoint_is_the_console_script():
    steps = instructions(DOCKERFILE)
    assert ("USER", "flowsteer") in steps
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "flowsteer" in scripts  # the image checks `flowsteer --version` after installing
    assert any(kind == "RUN" and "flowsteer --version" in args for kind, args in steps)


def test_the_mlflow_server_image_copies_files_that_exist_and_runs_as_a_user():
    for source in copied(MLFLOW_DOCKERFILE).values():
        assert (REPO / source).exists(), source
    assert ("USER", "mlflow") in instructions(MLFLOW_DOCKERFILE)
