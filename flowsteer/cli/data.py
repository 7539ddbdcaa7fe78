"""``flowsteer data generate|list|info|verify``: OGBench datasets on this machine (or a cluster's shared storage)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from flowsteer.datasets import catalog, store
from flowsteer.datasets.build import build_dataset
from flowsteer.datasets.catalog import OFFICIAL_EPISODE_STEPS, DatasetInfo
from flowsteer.datasets.errors import CorruptDatasetError, DatasetError
from flowsteer.datasets.generate import SIZES, GenerationSpec
from flowsteer.datasets.load import load_task
from flowsteer.datasets.npzfile import sha256


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("data", help="generate, list and inspect OGBench datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    generate = sub.add_parser(
        "generate",
        help="generate a dataset with OGBench's scripted oracles into the cache",
        description="Generate a manipulation (cube, scene, puzzle) or pointmaze dataset in OGBench's file "
        "format with the oracles shipped in the ogbench package. NAME is a dataset, category or task name.",
    )
    generate.add_argument("name", metavar="NAME")
    _add_copy_options(generate)
    generate.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    generate.add_argument("--force", action="store_true", help="regenerate even if the copy exists")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(run=_generate)

    listing = sub.add_parser("list", help="datasets available here (official files and generated copies)")
    listing.add_argument("--all", action="store_true", help="also list every dataset flowsteer knows")
    _add_dir_options(listing)
    listing.set_defaults(run=_list)

    info = sub.add_parser("info", help="facts about a dataset or task, and its copies on this machine")
    info.add_argument("name", metavar="NAME")
    _add_copy_options(info)
    info.add_argument("--stats", action="store_true", help="load the copy (never generating) and print its statistics")
    info.set_defaults(run=_info)

    verify = sub.add_parser(
        "verify",
        help="check every dataset copy by checksum (official files against SHA256SUMS, generated ones against "
        "their provenance)",
        description="Hash every official file in the data directories and compare it with the directory's "
        "SHA256SUMS manifest, and every generated copy in the cache with the checksums recorded when it was "
        "built. After placing official files once on shared storage, run it with --write-manifest: from then on "
        "every run and sweep checks those files against the manifest before it starts. Exit status 1 if any "
        "file fails.",
    )
    verify.add_argument("names", nargs="*", metavar="NAME", help="only these datasets (default: all found)")
    verify.add_argument(
        "--write-manifest",
        action="store_true",
        help="record official files missing from SHA256SUMS (never overwrites an entry: a mismatch stays a failure)",
    )
    _add_dir_options(verify)
    verify.set_defaults(run=_verify)


def _add_dir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help=f"directory of official files (default: ${store.DATA_DIR_ENV}, then ~/.ogbench/data)"
    )
    parser.add_argument(
        "--cache-dir", help=f"cache of generated datasets (default: ${store.CACHE_DIR_ENV} or ~/.cache/flowsteer)"
    )


def _add_copy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--episodes",
        type=episodes_arg,
        default=SIZES["official"],
        help="training episodes, or a size: smoke (10), small (100), official (1000, the default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    parser.add_argument(
        "--episode-steps", type=int, default=OFFICIAL_EPISODE_STEPS, help="rows per episode (default 1001)"
    )
    _add_dir_options(parser)


def add_data_source_options(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a task's dataset copy for a command that loads one (`train`, `base-policy train`);
    unset flags stay None, so a config file or DataSpec's defaults apply (`data_source_settings`)."""
    parser.add_argument("--episodes", type=episodes_arg, help="episodes of a generated dataset copy: a number, "
                        "or smoke (10), small (100), official (1000, the default)")  # fmt: skip
    parser.add_argument("--data-seed", type=int, help="generation seed of a generated copy (default 0)")
    parser.add_argument("--episode-steps", type=int, help="rows per episode of a generated copy (default 1001)")
    parser.add_argument("--source", choices=["auto", "official", "generated"], help="dataset copy to use")
    parser.add_argument("--data-dir", help="directory of official OGBench files")
    parser.add_argument("--cache-dir", help="cache of generated datasets")


def data_source_settings(args: argparse.Namespace) -> dict[str, object]:
    """The DataSpec fields (flowsteer.platform.spec) that `add_data_source_options`' flags set."""
    fields = {"episodes": "episodes", "data_seed": "seed", "episode_steps": "episode_steps", "source": "source",
              "data_dir": "data_dir", "cache_dir": "cache_dir"}  # fmt: skip
    return {field: getattr(args, flag) for flag, field in fields.items() if getattr(args, flag) is not None}


def episodes_arg(text: str) -> int:
    if text in SIZES:
        return SIZES[text]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of episodes or one of {', '.join(SIZES)}, got {text!r}"
        ) from None


def _generate(args: argparse.Namespace) -> int:
    info = catalog.get_dataset(args.name)
    if not info.generatable:
        raise DatasetError(store.missing_official_message(info, args.data_dir))
    spec = GenerationSpec(info.name, episodes=args.episodes, seed=args.seed, episode_steps=args.episode_steps)
    root = store.cache_root(args.cache_dir)
    try:
        existing = store.find_generated(spec, args.cache_dir)
    except CorruptDatasetError:
        if not args.force:
            raise
        existing = None  # rebuilt below; the damaged copy is replaced only once the new one is complete
    if existing is not None and not args.force:
        print(f"{info.name}: already generated at {existing.train.parent} (use --force to regenerate)")
        return 0
    started = time.perf_counter()
    directory = build_dataset(spec, root, workers=args.workers, progress=not args.quiet, force=args.force)
    seconds = time.perf_counter() - started
    files = store.find_generated(spec, args.cache_dir)
    assert files is not None
    rows = spec.total_episodes * spec.episode_steps
    size = sum(f.stat().st_size for f in (files.train, files.val))
    print(
        f"{info.name}: {spec.episodes} + {spec.val_episodes} validation episodes, "
        f"{files.provenance['files']['train']['transitions']:,} training transitions, "
        f"{_megabytes(size)} in {seconds:.1f} s ({rows / seconds:,.0f} env steps/s, {args.workers} worker(s))\n"
        f"  {directory}"
    )
    return 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _list(args: argparse.Namespace) -> int:
    rows = []
    have = set()
    for info in catalog.DATASETS.values():
        try:
            official = store.find_official(info, args.data_dir, checksums=False)
        except DatasetError as exc:
            rows.append([info.name, "official (unusable)", "", "", "", str(exc).splitlines()[0]])
            continue
        if official is not None:
            have.add(info.name)
            size = sum(f["bytes"] for f in official.provenance["files"].values())
            rows.append([info.name, "official", "", "", _megabytes(size), str(official.train.parent)])
    generated, damaged = store.scan_generated(args.cache_dir)
    for copy in damaged:
        rows.append([_dataset_of(copy.directory), "generated (DAMAGED)", "", "", "", _first_line(_reason(copy))])
    for files in generated:
        have.add(files.info.name)
        gen = files.provenance["generator"]
        size = sum(f["bytes"] for f in files.provenance["files"].values())
        transitions = files.provenance["files"]["train"]["transitions"]
        rows.append(
            [
                files.info.name,
                "generated",
                f"{gen['episodes']} ({transitions:,} tr.)",
                str(gen["seed"]),
                _megabytes(size),
                str(files.train.parent),
            ]
        )
    if args.all:
        for info in catalog.DATASETS.values():
            if info.name not in have:
                how = "flowsteer data generate" if info.generatable else "needs the official files"
                rows.append([info.name, "not here", "", "", "", how])
    if not rows:
        print(
            "No datasets here yet. Generate one with `flowsteer data generate cube-single-play-v0`, or "
            "see every known dataset with `flowsteer data list --all`."
        )
        return 0
    _print_table(["dataset", "source", "episodes", "seed", "size", "where"], rows)
    return 0


def _dataset_of(directory: Path) -> str:
    """The dataset a cache directory holds, from its name (cube-single-play__generated-n5-s0)."""
    return directory.name.split("__", 1)[0] + "-v0"


def _reason(copy: store.DamagedCopy) -> str:
    """Why a generated copy is damaged, its files named within its directory: a long cache path would otherwise
    push the reason past the line's width."""
    return copy.reason.replace(f"{copy.directory}{os.sep}", "")


def _first_line(text: str, width: int = 160) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _info(args: argparse.Namespace) -> int:
    info = catalog.get_dataset(args.name)
    task = catalog.parse_task(args.name) if "-singletask" in args.name else None
    _print_facts(info, task)
    _print_copies(info, args)
    if args.stats:
        _print_stats(task.name if task else info.default_task_name, args)
    return 0


def _print_facts(info: DatasetInfo, task: catalog.TaskRef | None) -> None:
    family = info.family
    tasks = ", ".join(
        f"task{k}{' (default)' if k == family.default_task else ''}" for k in range(1, catalog.NUM_TASKS + 1)
    )
    generator = (
        f"yes ({family.generator} oracle: {GenerationSpec(info.name, episodes=1).recipe()})"
        if info.generatable
        else "no (the data comes from SAC experts on the OGBench dataset server)"
    )
    lines = [
        ("dataset", info.name),
        ("task", task.name if task else f"{info.default_task_name} (default)"),
        ("category", f"{info.category} ({family.domain})"),
        ("environment", task.env_name if task else info.env_name(family.default_task)),
        ("observation / action dims", f"{family.obs_dim} / {family.act_dim}"),
        ("episode limit (single-task)", f"{family.episode_steps} steps"),
        ("tasks", tasks),
        ("official size", f"{info.official_episodes} episodes, {info.official_transitions:,} transitions"),
        ("in the FQL paper", "yes" if info.in_fql_paper else "no"),
        ("generatable here", generator),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def _print_copies(info: DatasetInfo, args: argparse.Namespace) -> None:
    print("\ncopies on this machine:")
    found = False
    try:
        official = store.find_official(info, args.data_dir, checksums=False)
    except DatasetError as exc:
        print(f"  official files present but unusable: {exc}")
        official = None
    if official is not None:
        found = True
        print(f"  official   {official.train.parent}")
    generated, damaged = store.scan_generated(args.cache_dir)
    for copy in damaged:
        if _dataset_of(copy.directory) == info.name:
            found = True
            print(f"  generated  DAMAGED: {_first_line(_reason(copy))}")
    for files in generated:
        if files.info.name == info.name:
            found = True
            gen = files.provenance["generator"]
            print(
                f"  generated  episodes={gen['episodes']} seed={gen['seed']} steps/episode="
                f"{gen['episode_steps']} ({files.provenance['created']})  {files.train.parent}"
            )
    if not found:
        hint = (
            f"flowsteer data generate {info.name}"
            if info.generatable
            else store.missing_official_message(info, args.data_dir)
        )
        print(f"  none. {hint}")


def _print_stats(task_name: str, args: argparse.Namespace) -> None:
    task = load_task(
        task_name,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        episodes=args.episodes,
        seed=args.seed,
        episode_steps=args.episode_steps,
        generate=False,
        progress=False,
    )
    print(f"\n{task.name} ({task.provenance['source']} copy):")
    for split, data in (("train", task.train), ("val", task.val)):
        rewards, masks = data["rewards"], data["masks"]
        print(
            f"  {split:5s} {len(rewards):>9,} transitions  reward min/mean/max "
            f"{rewards.min():.0f}/{rewards.mean():.3f}/{rewards.max():.0f}  solved states (mask 0) "
            f"{int((masks == 0).sum()):,}  episodes {int(data['terminals'].sum()):,}  "
            f"mean |action| {np.abs(data['actions']).mean():.3f}"
        )
    task.env.close()


def _verify(args: argparse.Namespace) -> int:
    wanted = {catalog.get_dataset(name).name for name in args.names}
    rows: list[list[str]] = []
    for directory in store.official_dirs(args.data_dir):
        rows += _verify_official(directory.absolute(), wanted, args.write_manifest)
    generated, damaged = store.scan_generated(args.cache_dir)
    for copy in damaged:
        if not wanted or _dataset_of(copy.directory) in wanted:
            state = f"DAMAGED ({_first_line(_reason(copy), 100)}; rebuild it with data generate --force)"
            rows.append([_dataset_of(copy.directory), "generated", "-", state, str(copy.directory)])
    for files in generated:
        if wanted and files.info.name not in wanted:
            continue
        for split, path in (("train", files.train), ("val", files.val)):
            expected = files.provenance["files"][split]["sha256"]
            state = "ok" if sha256(path) == expected else "MISMATCH (regenerate it)"
            rows.append([files.info.name, "generated", path.name, state, str(path.parent)])
    if not rows:
        print("No dataset copies found here (see `flowsteer data list --all`).")
        return 1 if wanted else 0
    _print_table(["dataset", "source", "file", "check", "where"], rows)
    failed = sum(not row[3].startswith(("ok", "recorded")) for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} file(s) passed" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _verify_official(directory: Path, wanted: set[str], write: bool) -> list[list[str]]:
    """One row per official file in ``directory``; with ``write``, unlisted files are added to the manifest."""
    if not directory.is_dir():
        return []
    manifest = store.read_manifest(directory)
    entries = dict(manifest or {})
    rows = []
    for info in catalog.DATASETS.values():
        if wanted and info.name not in wanted:
            continue
        for name in (f"{info.name}.npz", f"{info.name}-val.npz"):
            path = directory / name
            if not path.exists():
                continue
            digest = sha256(path)
            try:
                store.check_files(info, path, path)
                problem = None
            except DatasetError as exc:
                problem = f"UNUSABLE ({str(exc).splitlines()[0][:80]})"
            if problem:
                state = problem
            elif name not in entries and write:
                entries[name], state = digest, "recorded in SHA256SUMS"
            elif name not in entries:
                state = "no manifest entry (add it with --write-manifest)"
            else:
                state = "ok" if entries[name] == digest else "MISMATCH with SHA256SUMS (copy it again)"
            rows.append([info.name, "official", name, state, str(directory)])
    if write and entries != (manifest or {}):
        print(f"wrote {store.write_manifest(directory, entries)}")
    return rows
