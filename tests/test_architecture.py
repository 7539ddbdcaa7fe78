"""The architecture of docs/design.md holds: imports point one way (contracts in pyproject.toml, checked by
import-linter), and the repository cites only sources a reader can open."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_import_in_one_direction_only() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of requirements-dev.txt"
    result = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# Documents that live outside the repository: a reader of a clone cannot open them. Cite docs/*.md (section), a
# paper (section, equation) or a public reference file instead. This file names them, so it is not searched.
# Written in pieces so that a search of the repository for them does not find this line.
OUTSIDE_SOURCES = tuple(
    a + b for a, b in [("spec", " §"), ("shared/", "spec"), ("shared/", "reference"), ("DESIGN", ".md")]
)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    paths = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and p.relative_to(ROOT).parts[0] != "docs" and p != Path(__file__)]


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    hits = []
    for path in _tracked_text_files():
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(source in line for source in OUTSIDE_SOURCES):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "cite docs/*.md, a paper or a public reference file instead:\n" + "\n".join(hits)
