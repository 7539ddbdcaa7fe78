"""The container definitions install exactly the pinned dependency set: requirements.txt is the one source of
truth, so a Dockerfile names no version; what it adds (extras) is resolved against those pins."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

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


def pins() -> dict[str, Requirement]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            found[requirement.name.lower()] = requirement
    return found


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


def test_the_image_installs_requirements_txt_and_names_no_version():
    pinned = pins()
    installs = pip_installs(DOCKERFILE)
    assert installs, "no pip install found"
    for args in installs:
        if args == ["--no-deps", "."]:  # flowsteer itself, after its dependencies
            continue
        assert args[:2] == ["-r", "requirements.txt"], args
        for extra in args[2:]:
            requirement = Requirement(extra)
            assert not requirement.specifier, f"{extra}: versions come from requirements.txt only"
            assert requirement.name.lower() in pinned, f"{extra} is not pinned in requirements.txt"
            assert requirement.extras, f"{extra} adds nothing to the pinned {requirement.name}"


def test_the_extras_it_adds_exist_at_the_pinned_versions():
    """ray[default] (dashboard, job server) and jax[cuda12] (CUDA plugin, pinned by jax to the jaxlib pin)."""
    pinned = pins()
    for args in pip_installs(DOCKERFILE):
        for extra in (Requirement(a) for a in args[2:] if a != "."):
            installed = importlib.metadata.distribution(extra.name)
            assert pinned[extra.name.lower()].specifier.contains(installed.version)  # this venv is the pinned set
            assert set(extra.extras) <= set(installed.metadata.get_all("Provides-Extra") or []), extra
    cuda = [Requirement(r) for r in importlib.metadata.requires("jax") if 'extra == "cuda12"' in r]
    plugin = next(r for r in cuda if r.name == "jax-cuda12-plugin")
    (jaxlib_pin,) = pinned["jaxlib"].specifier
    assert plugin.specifier.contains(jaxlib_pin.version)
    assert "with-cuda" in plugin.extras  # CUDA comes as wheels; the host needs only the driver


def test_the_gpu_image_is_the_cpu_image_plus_the_cuda_plugin():
    stages = [args.split() for kind, args in instructions(DOCKERFILE) if kind == "FROM"]
    assert [s[-1] for s in stages] == ["cpu", "gpu"] and stages[1][0] == "cpu"
    gpu_installs = pip_installs(DOCKERFILE)[-1]
    added = [Requirement(a) for a in gpu_installs if not a.startswith("-") and not a.endswith(".txt")]
    assert any(r.name == "jax" and "cuda12" in r.extras for r in added), gpu_installs
    assert "requirements.txt" in gpu_installs  # installed against the pins, so the CUDA extra cannot move them


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


def test_the_mlflow_server_image_takes_mlflows_version_from_requirements_txt():
    run = next(args for kind, args in instructions(MLFLOW_DOCKERFILE) if kind == "RUN" and "pip install" in args)
    # Evaluate the Dockerfile's own expression against the real requirements.txt.
    expression = re.search(r'"mlflow\[auth\](\$\(sed .*?requirements\.txt\))"', run).group(1)
    expression = expression.replace("/tmp/requirements.txt", str(REPO / "requirements.txt"))
    version = subprocess.run(["sh", "-c", f"echo {expression}"], capture_output=True, text=True, check=True).stdout
    assert Requirement(f"mlflow{version.strip()}").specifier == pins()["mlflow"].specifier
    for kind, args in instructions(MLFLOW_DOCKERFILE):
        if kind == "COPY":
            assert (REPO / args.split()[0]).exists()
    assert ("USER", "mlflow") in instructions(MLFLOW_DOCKERFILE)
