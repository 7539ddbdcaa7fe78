"""Where datasets live, and which copy a run uses.

Resolution order for a dataset (docs/design.md#datasets):
1. the official files in a directory the user configures (``--data-dir`` or ``FLOWSTEER_OGBENCH_DIR``),
2. the official files in ``~/.ogbench/data`` (where ``ogbench.download_datasets`` puts them),
3. flowsteer's cache of generated datasets (``--cache-dir``, ``FLOWSTEER_CACHE_DIR``, ``~/.cache/flowsteer``),
4. generation on demand, for the datasets that OGBench's scripted oracles can produce.
Every copy is checked (keys, dtypes, shapes) before it is used, and comes with its provenance. When a run or a
sweep resolves a dataset, its files are also checked by checksum: official files against the ``SHA256SUMS``
manifest of their directory when it has one (written once by ``flowsteer data verify --write-manifest``, e.g.
after placing the files on a cluster's shared storage), generated copies against their provenance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flowsteer.datasets.build import PROVENANCE_FILE, TRAIN_FILE, VAL_FILE, build_dataset
from flowsteer.datasets.catalog import OFFICIAL_EPISODE_STEPS, DatasetInfo, get_dataset
from flowsteer.datasets.errors import CorruptDatasetError, DatasetError, MissingOfficialDataError, NotWritableError
from flowsteer.datasets.generate import GenerationSpec
from flowsteer.datasets.npzfile import read_headers, sha256

DATA_DIR_ENV = "FLOWSTEER_OGBENCH_DIR"
CACHE_DIR_ENV = "FLOWSTEER_CACHE_DIR"
OGBENCH_DEFAULT_DIR = Path("~/.ogbench/data")
OFFICIAL_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"
MANIFEST_FILE = "SHA256SUMS"  # sha256sum's format, so `sha256sum -c SHA256SUMS` checks the same files
Source = Literal["auto", "official", "generated"]


@dataclass(frozen=True)
class DatasetFiles:
    """A train/validation file pair on disk and where it came from."""

    info: DatasetInfo
    train: Path
    val: Path
    provenance: dict[str, Any]

    @property
    def source(self) -> str:
        return self.provenance["source"]


def official_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Directories searched for official files, in order."""
    configured = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    dirs = [Path(configured).expanduser()] if configured else []
    default = OGBENCH_DEFAULT_DIR.expanduser()
    return dirs + ([default] if default not in dirs else [])


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Root of flowsteer's cache of generated datasets."""
    configured = cache_dir if cache_dir is not None else os.environ.get(CACHE_DIR_ENV)
    return Path(configured or "~/.cache/flowsteer").expanduser().absolute()


def find_official(info: DatasetInfo, data_dir: str | Path | None = None, checksums: bool = True) -> DatasetFiles | None:
    """The official file pair of ``info`` in the first directory that has it, checked (headers; sha256 of
    both files into the provenance unless ``checksums`` is off, as listings do: ~1 s per 250 MB)."""
    for directory in official_dirs(data_dir):
        train, val = directory / f"{info.name}.npz", directory / f"{info.name}-val.npz"
        if not train.exists() and not val.exists():
            continue
        if not (train.exists() and val.exists()):
            missing, present = (val, train) if train.exists() else (train, val)
            raise CorruptDatasetError(
                f"{present} exists but {missing} does not: an official dataset is a pair of files. "
                f"Copy the missing file there (from {OFFICIAL_URL}/{missing.name})."
            )
        check_files(info, train, val)
        files = {split: _file_record(path, checksums) for split, path in (("train", train), ("val", val))}
        if checksums:
            _check_manifest(directory, files)
        where = str(directory.absolute())
        provenance = {"source": "official", "dataset": info.name, "directory": where, "files": files}
        return DatasetFiles(info, train, val, provenance)
    return None


def read_manifest(directory: Path) -> dict[str, str] | None:
    """File name -> sha256 from ``directory/SHA256SUMS``; None when the directory has no manifest."""
    path = directory / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptDatasetError(f"{path} is not a checksum list (not UTF-8 text); restore it or delete it.") from None
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise CorruptDatasetError(f"{path}, line {number}: expected '<sha256>  <file name>', got {line!r}.")
        entries[name.lstrip("*")] = digest.lower()
    return entries


def write_manifest(directory: Path, entries: dict[str, str]) -> Path:
    """Write ``directory/SHA256SUMS`` atomically (a half-written manifest would fail every check)."""
    path = directory / MANIFEST_FILE
    scratch = directory / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
    try:
        scratch.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items())))
        os.replace(scratch, path)
    except OSError as exc:
        raise NotWritableError(
            f"cannot write {path} ({exc.strerror or exc}); run `flowsteer data verify --write-manifest` as a user "
            f"who can write to {directory}, or without --write-manifest to only check."
        ) from None
    return path


def _check_manifest(directory: Path, files: dict[str, dict[str, Any]]) -> None:
    manifest = read_manifest(directory)
    if manifest is None:
        return
    for record in files.values():
        expected = manifest.get(record["file"])
        if expected is None:
            raise CorruptDatasetError(
                f"{directory / record['file']} is not listed in {directory / MANIFEST_FILE}, so it cannot be "
                f"checked. Add it with `flowsteer data verify --data-dir {directory} --write-manifest`."
            )
        if expected != record["sha256"]:
            raise CorruptDatasetError(
                checksum_message(directory / record["file"], expected, record["sha256"]) + " Copy it again."
            )


def checksum_message(path: Path, expected: str, actual: str) -> str:
    return (
        f"{path} has sha256 {actual[:16]}..., but {expected[:16]}... was recorded for it: the file changed or is "
        f"damaged (a partial copy?); nothing was started."
    )


def _file_record(path: Path, checksum: bool = True) -> dict[str, Any]:
    record = {"file": path.name, "bytes": path.stat().st_size}
    return record | {"sha256": sha256(path)} if checksum else record


def find_generated(
    spec: GenerationSpec, cache_dir: str | Path | None = None, checksums: bool = False
) -> DatasetFiles | None:
    """The cached, complete copy of ``spec``, checked (headers; with ``checksums`` also the sha256 of both files
    against its provenance); None if it was never generated."""
    directory = cache_root(cache_dir) / "ogbench" / spec.cache_key
    if not directory.exists():
        return None
    try:
        return _generated_files(directory, checksums)
    except CorruptDatasetError as exc:
        raise CorruptDatasetError(f"{exc} Rebuild it: {regenerate_command(spec)}") from None


def regenerate_command(spec: GenerationSpec) -> str:
    """The command that replaces a damaged generated copy (atomically: the old one stays until the new one is done)."""
    steps = "" if spec.episode_steps == OFFICIAL_EPISODE_STEPS else f" --episode-steps {spec.episode_steps}"
    return f"flowsteer data generate {spec.dataset} --episodes {spec.episodes} --seed {spec.seed}{steps} --force"


def _generated_files(directory: Path, checksums: bool = False) -> DatasetFiles:
    provenance_path = directory / PROVENANCE_FILE
    try:
        provenance = json.loads(provenance_path.read_text())
        info = get_dataset(provenance["dataset"])
    except (OSError, ValueError, KeyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CorruptDatasetError(
            f"{provenance_path} is missing or unreadable ({reason}); the cached dataset in {directory} cannot "
            f"be trusted."
        ) from exc
    train, val = directory / TRAIN_FILE, directory / VAL_FILE
    check_files(info, train, val)
    if checksums:
        for split, path in (("train", train), ("val", val)):
            expected, actual = provenance["files"][split]["sha256"], sha256(path)
            if expected != actual:
                raise CorruptDatasetError(checksum_message(path, expected, actual))
    return DatasetFiles(info, train, val, {**provenance, "directory": str(directory)})


@dataclass(frozen=True)
class DamagedCopy:
    """A generated copy in the cache that cannot be used, and why."""

    directory: Path
    reason: str


def list_generated(cache_dir: str | Path | None = None) -> list[DatasetFiles]:
    """Every usable generated dataset in the cache (builds in progress are hidden; see ``damaged_generated``)."""
    return scan_generated(cache_dir)[0]


def damaged_generated(cache_dir: str | Path | None = None) -> list[DamagedCopy]:
    """Generated copies that cannot be used (a file cut short or missing, no provenance), for listings to show."""
    return scan_generated(cache_dir)[1]


def scan_generated(cache_dir: str | Path | None = None) -> tuple[list[DatasetFiles], list[DamagedCopy]]:
    """Every generated copy in the cache: the usable ones and the damaged ones (checked by headers)."""
    parent = cache_root(cache_dir) / "ogbench"
    if not parent.is_dir():
        return [], []
    found, damaged = [], []
    for directory in sorted(parent.iterdir()):
        if directory.is_dir() and not directory.name.startswith("."):
            try:
                found.append(_generated_files(directory))
            except DatasetError as exc:
                damaged.append(DamagedCopy(directory, str(exc)))
    return found, damaged


def check_files(info: DatasetInfo, train: Path, val: Path) -> None:
    """Fail with a clear message unless both files have the keys, dtypes and shapes OGBench needs."""
    for path in (train, val):
        if not path.exists():
            raise CorruptDatasetError(f"{path} is missing. Generate or download the dataset again.")
        _check_headers(info, path, read_headers(path))


def _check_headers(info: DatasetInfo, path: Path, headers: dict) -> None:
    required = ["observations", "actions", "terminals", "qpos", "qvel"]
    if info.family.name.startswith(("scene", "puzzle")):
        required.append("button_states")  # singletask relabelling reads them
    missing = [key for key in required if key not in headers]
    if missing:
        raise CorruptDatasetError(
            f"{path} lacks the keys {missing} (has {sorted(headers)}). OGBench's single-task relabelling "
            f"needs them; this is not an official or flowsteer-generated {info.name} file. Replace it."
        )
    rows = headers["observations"][0][0] if headers["observations"][0] else 0
    expected_width = {"observations": info.family.obs_dim, "actions": info.family.act_dim}
    for key in required:
        shape, dtype = headers[key]
        width_ok = key not in expected_width or (len(shape) == 2 and shape[1] == expected_width[key])
        if not shape or shape[0] != rows or not width_ok or (key == "terminals" and len(shape) != 1):
            want = f"({rows}, {expected_width[key]})" if key in expected_width else f"{rows} rows"
            raise CorruptDatasetError(
                f"{path}: '{key}' has shape {shape}, expected {want} for {info.name}. The file belongs to "
                f"another dataset or is damaged; replace it."
            )
        if key != "terminals" and dtype.kind not in "fiu":
            raise CorruptDatasetError(f"{path}: '{key}' has dtype {dtype}, expected a numeric array.")
    if rows == 0:
        raise CorruptDatasetError(f"{path} holds no rows. Generate or download the dataset again.")


@dataclass(frozen=True)
class DatasetPlan:
    """Which copy of a dataset a run or sweep will use, found without generating or hashing anything."""

    info: DatasetInfo
    source: str  # 'official', 'generated' (a cached copy) or 'generate' (built on first use)
    where: Path  # the copy's directory, or the cache it will be generated into
    spec: GenerationSpec | None = None  # the generated copy ('generated', 'generate')

    def describe(self) -> str:
        if self.source == "generate":
            assert self.spec is not None
            return f"to generate ({self.spec.episodes} episodes, seed {self.spec.seed}) into {self.where}"
        return f"{'official files' if self.source == 'official' else 'generated copy'} in {self.where}"


def plan(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    source: Source = "auto",
    episodes: int = 1000,
    seed: int = 0,
    episode_steps: int = OFFICIAL_EPISODE_STEPS,
) -> DatasetPlan:
    """The copy ``resolve`` will use (same order), checked by headers only: cheap enough to run for every dataset
    of a sweep before anything is generated. MissingOfficialDataError when no copy can be had here."""
    info = get_dataset(dataset)
    if source not in ("auto", "official", "generated"):
        raise DatasetError(f"source must be 'auto', 'official' or 'generated', not {source!r}.")
    if source in ("auto", "official"):
        official = find_official(info, data_dir, checksums=False)
        if official is not None:
            return DatasetPlan(info, "official", official.train.parent)
        if source == "official" or not info.generatable:
            raise MissingOfficialDataError(missing_official_message(info, data_dir))
    spec = GenerationSpec(info.name, episodes=episodes, seed=seed, episode_steps=episode_steps)
    cached = find_generated(spec, cache_dir)
    if cached is not None:
        return DatasetPlan(info, "generated", cached.train.parent, spec)
    return DatasetPlan(info, "generate", cache_root(cache_dir) / "ogbench", spec)


def resolve(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    source: Source = "auto",
    episodes: int = 1000,
    seed: int = 0,
    episode_steps: int = OFFICIAL_EPISODE_STEPS,
    generate: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> DatasetFiles:
    """Find (or generate) the files of ``dataset`` following the resolution order above.

    ``episodes``, ``seed`` and ``episode_steps`` select a generated copy; ``source`` restricts the search. The
    copy is the one ``plan`` finds, now also checked by checksum.
    """
    entry = plan(dataset, data_dir=data_dir, cache_dir=cache_dir, source=source, episodes=episodes, seed=seed,
                 episode_steps=episode_steps)  # fmt: skip
    info, spec = entry.info, entry.spec
    if entry.source == "official":
        return _still_there(find_official(info, data_dir), entry)
    assert spec is not None
    if entry.source == "generated":
        return _still_there(find_generated(spec, cache_dir, checksums=True), entry)
    if not generate:
        raise DatasetError(
            f"No copy of {info.name} with {episodes} episodes and seed {seed} is available and generation is "
            f"off. Run `flowsteer data generate {info.name} --episodes {episodes} --seed {seed}` first."
        )
    build_dataset(spec, cache_root(cache_dir), workers=workers, progress=progress)
    return _still_there(find_generated(spec, cache_dir), entry)


def _still_there(files: DatasetFiles | None, entry: DatasetPlan) -> DatasetFiles:
    """The copy ``entry`` planned (or just built); gone only if another process deleted it in between."""
    if files is None:
        raise DatasetError(
            f"The copy of {entry.info.name} in {entry.where} disappeared while this process was reading it (another "
            f"process deleted it); run again."
        )
    return files


def missing_official_message(info: DatasetInfo, data_dir: str | Path | None = None) -> str:
    """How to obtain the official files and where to put them."""
    searched = ", ".join(str(d) for d in official_dirs(data_dir))
    why = (
        "Its data was collected by SAC expert policies that only the OGBench dataset server has, so "
        "flowsteer cannot generate it."
        if not info.generatable
        else "You asked for the official files."
    )
    return (
        f"The official files of {info.name} are not on this machine (searched: {searched}). {why}\n"
        f"Get {info.name}.npz and {info.name}-val.npz on a machine with internet access, either with\n"
        f"  python -c \"import ogbench; ogbench.download_datasets(['{info.name}'], '~/.ogbench/data')\"\n"
        f"or from {OFFICIAL_URL}/{info.name}.npz (and -val.npz), then copy both files into ~/.ogbench/data or "
        f"a directory named by --data-dir / {DATA_DIR_ENV}. The environment itself works without them."
    )
