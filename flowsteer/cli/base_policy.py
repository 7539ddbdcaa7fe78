"""``flowsteer base-policy train``: train a torch diffusion policy on a task's dataset and write a base-policy
file that DSRL steers (docs/base-policies.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from flowsteer.cli.data import add_data_source_options, data_source_settings
from flowsteer.datasets.catalog import parse_task, single_task
from flowsteer.datasets.load import load_task
from flowsteer.platform.spec import DataSpec
from flowsteer.policies.interface import BasePolicyError
from flowsteer.policies.torch_policy import MANIFEST_SUFFIXES, check_device, import_torch, save_torchscript_policy
from flowsteer.validation import first_error

FRAMEWORKS = ("torch",)
_TRAINER_FLAGS = ("batch_size", "lr", "hidden_dims", "denoising_steps", "ddim_steps")  # train_ddpm_policy arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "base-policy",
        help="make base policies for DSRL to steer",
        description="Base policies are pretrained diffusion or flow policies that DSRL steers through their noise "
        "(docs/base-policies.md).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train a torch diffusion policy (DDPM, DDIM sampler) on a task's dataset and write it",
        description="Train a DPPO-style diffusion policy (residual MLP, DDPM loss, deterministic DDIM sampler) by "
        "behaviour cloning on a task's dataset and write a TorchScript base-policy file the loader reads.",
    )
    train.add_argument("--framework", required=True, help="torch (the only framework this command trains)")
    train.add_argument("--task", required=True, help="e.g. cube-single-play-singletask-task2-v0")
    train.add_argument("--steps", type=int, required=True, help="gradient steps")
    train.add_argument("--out", type=Path, required=True, help="the file to write (e.g. cube-single.pt)")
    train.add_argument("--force", action="store_true", help="replace --out if it exists")
    train.add_argument("--action-chunk", type=int, default=1, help="H: actions per call, trained on H-step chunks")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    # unset: the trainer's defaults (flowsteer.policies.ddpm, DPPO's gym pretraining values), written once there
    train.add_argument("--batch-size", type=int, help="default 128 (DPPO)")
    train.add_argument("--lr", type=float, help="AdamW learning rate, cosine-annealed to 1e-4 (default 1e-3, DPPO)")
    train.add_argument("--hidden-dims", type=_widths, help="residual MLP widths (default 512,512,512, DPPO)")
    train.add_argument("--denoising-steps", type=int, help="DDPM steps T (default 20, DPPO)")
    train.add_argument("--ddim-steps", type=int, help="DDIM sampling steps (default 5)")
    train.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    add_data_source_options(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.replace(" ", "").strip("[]()").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 512,512,512, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths like 512,512,512, got {text!r}")
    return widths


def _check_settings(args: argparse.Namespace, task_name: str) -> None:
    """Build the sampler the trainer would build, with the task's shapes from the catalog: its refusals (widths,
    DDIM steps) come before any data is read."""
    from flowsteer.policies.ddpm import ddim_sampler  # imports torch

    if args.steps < 1 or args.action_chunk < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise BasePolicyError(
            f"--steps, --action-chunk and --batch-size must be >= 1, got {args.steps}, {args.action_chunk}, "
            f"{args.batch_size}"
        )
    family = parse_task(task_name).dataset.family
    shape = {name: getattr(args, name) for name in ("hidden_dims", "denoising_steps", "ddim_steps")}
    try:
        ddim_sampler(family.obs_dim, family.act_dim, args.action_chunk, **{k: v for k, v in shape.items() if v})
    except ValueError as exc:
        raise BasePolicyError(str(exc)) from None


def _train(args: argparse.Namespace) -> int:
    if args.framework not in FRAMEWORKS:
        raise BasePolicyError(
            f"--framework {args.framework}: `base-policy train` trains torch policies only; use --framework torch. "
            "(A flowsteer JAX flow is steered from its finished run: --hp base_run=RUN_DIR.)"
        )
    out = args.out.expanduser().absolute()
    if out.suffix.lower() in MANIFEST_SUFFIXES:
        raise BasePolicyError(f"--out {out}: a {out.suffix} file is read as a manifest; name it e.g. {out.stem}.pt")
    if out.exists() and not args.force:
        raise BasePolicyError(f"--out {out} exists; choose another path or pass --force to replace it")
    if not out.parent.is_dir():
        raise BasePolicyError(f"--out {out}: directory {out.parent} does not exist; create it first")
    device = check_device(import_torch(), args.device)  # no torch, or no GPU for cuda: stop before loading data
    task_name = single_task(args.task)
    _check_settings(args, task_name)  # and settings the trainer would refuse: before minutes of data generation
    try:
        data = DataSpec.model_validate(data_source_settings(args))
    except ValidationError as exc:
        raise BasePolicyError(first_error(exc, DataSpec)) from None
    task = load_task(task_name, progress=not args.quiet, **data.model_dump())
    task.env.close()  # only the data is needed
    train = task.train

    from flowsteer.policies.ddpm import train_ddpm_policy  # imports torch

    print(
        f"base policy: DDPM on {task_name} ({len(train['observations']):,} rows), {args.steps:,} steps, seed "
        f"{args.seed}, device {device}"
    )
    started = time.perf_counter()
    with tqdm(total=args.steps, unit="step", disable=args.quiet, dynamic_ncols=True) as bar:

        def progress(step: int, loss: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}")

        try:
            trained = train_ddpm_policy(
                train["observations"],
                train["actions"],
                train["terminals"],
                steps=args.steps,
                action_chunk=args.action_chunk,
                seed=args.seed,
                device=device,
                task=task_name,
                progress=progress,
                **{name: getattr(args, name) for name in _TRAINER_FLAGS if getattr(args, name) is not None},
            )
        except ValueError as exc:  # settings the trainer refuses (hidden dims, ddim steps, chunk too long)
            raise BasePolicyError(str(exc)) from None
    digest = save_torchscript_policy(trained.sampler, trained.metadata, out)
    meta = trained.metadata
    print(
        f"wrote {out}\n  sha256 {digest}\n  obs_dim {meta.obs_dim}, act_dim {meta.act_dim}, action_chunk "
        f"{meta.action_chunk} (noise and actions {meta.action_chunk * meta.act_dim}), sampler ddim x "
        f"{meta.sampler_steps}\n  final loss {trained.final_loss:.4f} after {args.steps:,} steps in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0
