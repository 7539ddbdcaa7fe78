"""Reading and writing OGBench's ``.npz`` files: byte-reproducible writes, header-only checks.

``np.savez_compressed`` stamps every zip member with the current time, so two runs with the same seed
would differ in bytes. We write the same format (a zip of ``.npy`` members, deflated) with a fixed
timestamp instead; ``np.load`` and ``ogbench.load_dataset`` read it as usual.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from flowsteer.datasets.errors import CorruptDatasetError

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
_CHUNK_ROWS = 65536


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` (deflated unless ``compress`` is off) whose bytes depend only on them."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method, allowZip64=True) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                _write_npy(member, np.asarray(array))
    fsync(path)


def _write_npy(stream, array: np.ndarray) -> None:
    # Stream in row chunks so a memory-mapped array is never copied whole into RAM.
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": array.shape,
    }
    np.lib.format.write_array_header_1_0(stream, header)
    if array.ndim == 0:
        stream.write(array.tobytes())
        return
    for start in range(0, len(array), _CHUNK_ROWS):
        stream.write(np.ascontiguousarray(array[start : start + _CHUNK_ROWS]).tobytes())


def fsync(path: Path) -> None:
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an ``.npz``, reading only the headers (cheap for 1 GB files)."""
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member)
                headers[name[: -len(".npy")]] = (shape, dtype)
            return headers
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CorruptDatasetError(
            f"{path} is not a readable .npz dataset file ({type(exc).__name__}: {exc}). It is truncated or "
            f"corrupted: delete it and download or generate it again."
        ) from exc


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
