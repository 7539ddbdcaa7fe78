"""JSON files of a run directory: written atomically, read back with an error that names the damaged file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowsteer.rundir.errors import RunFileError


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` to a hidden file beside ``path``, then rename it over ``path``: readers see old or new."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON value in ``path``; ``default`` when there is no such file; RunFileError when it is damaged."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return default
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is damaged: it is not text (not UTF-8).") from None
    except OSError as exc:
        raise RunFileError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path} is damaged: it is not valid JSON ({exc}); it was cut short or edited.") from None
