"""The ``train`` subcommand: train a DF/LIAE swap model on two facesets (src = identity to produce)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from realtime_swap.train.config import (
    PRESETS,
    Arch,
    AugmentOn,
    ModelConfig,
    OptimizerKind,
    Preset,
    PresetSpec,
    model_config_for,
)
from realtime_swap.types import FaceType

EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="train a DF/LIAE face-swap model on two facesets",
        description=(
            "Train a swap autoencoder: faces of --dst are turned into the identity of --src. The --out folder "
            "receives the checkpoint (safetensors + state.json), loss.csv, loss.png and previews/. "
            "Ctrl-C stops after the current iteration and saves."
        ),
    )
    p.add_argument("--src", type=Path, required=True, help="faceset of the identity to produce (the celebrity)")
    p.add_argument("--dst", type=Path, required=True, help="faceset of the person in the live video")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--arch", choices=[a.value for a in Arch], default=None, help="architecture (default: df)")
    p.add_argument(
        "--preset",
        choices=[x.value for x in Preset],
        default=None,
        help="widths preset (default: live): "
        + "; ".join(f"{k.value} {v.resolution}px ae{v.ae_dims}" for k, v in PRESETS.items()),
    )
    p.add_argument("--resolution", type=int, default=None, help="px, 64..320 step 16 (default: the preset's)")
    for name, what in (
        ("e-dims", "encoder base width"),
        ("ae-dims", "bottleneck width"),
        ("d-dims", "decoder base width"),
        ("d-mask-dims", "mask decoder base width"),
    ):
        p.add_argument(f"--{name}", type=int, default=None, help=f"{what} (default: the preset's; makes it 'custom')")
    p.add_argument("--iterations", type=int, default=20000, help="train until this iteration count (default 20000)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    p.add_argument("--optimizer", choices=[o.value for o in OptimizerKind], default=OptimizerKind.ADAM.value)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on CUDA")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights (a model pretrained on other faces, same architecture); "
        "the optimiser and iteration count start afresh",
    )
    p.add_argument("--preview-every", type=int, default=200, help="iterations between preview PNGs (default 200)")
    p.add_argument("--save-every", type=int, default=1000, help="iterations between checkpoints (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    p.add_argument("--random-warp", action=argparse.BooleanOptionalAction, default=True, help="DFL random warp")
    p.add_argument("--flip", action="store_true", help="random left-right flips")
    p.add_argument(
        "--color-transfer", type=float, default=0.5, help="probability of recolouring src towards dst (default 0.5)"
    )
    p.add_argument("--gan-power", type=float, default=0.0, help="patch-GAN loss weight, 0 = off (DFL uses 0.1)")
    p.add_argument("--gan-start", type=int, default=0, help="iteration at which the GAN loss starts")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--workers", type=int, default=0, help="processes that augment batches (default 0: one background thread)"
    )
    p.add_argument(
        "--augment-on",
        choices=[a.value for a in AugmentOn],
        default=AugmentOn.AUTO.value,
        help="where batches are augmented: on the training device (torch, facesets uploaded once) or the CPU; "
        "auto: the device when training on CUDA with --workers 0, else the CPU (default auto)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _model_config(args: argparse.Namespace, resumed: ModelConfig | None, face_type: FaceType) -> ModelConfig:
    """The architecture asked for: the preset's (default live), or when resuming the checkpoint's, with any
    --arch/--preset/--resolution/--*-dims given on top (a mismatch is then reported by the trainer)."""
    arch = Arch(args.arch) if args.arch else (resumed.arch if resumed else Arch.DF)
    if resumed is not None and args.preset is None:
        config = dataclasses.replace(resumed, arch=arch, resolution=args.resolution or resumed.resolution)
    else:
        config = model_config_for(arch, Preset(args.preset or Preset.LIVE), args.resolution, face_type)
    widths = {k: getattr(args, k) for k in ("e_dims", "ae_dims", "d_dims", "d_mask_dims")}
    widths = {k: v for k, v in widths.items() if v is not None}
    if widths:
        config = dataclasses.replace(config, preset="custom", **widths)
    return config


def run(args: argparse.Namespace) -> int:
    """Run ``train``; returns 0 when the target is reached, 130 when stopped by Ctrl-C (checkpoint saved)."""
    import torch

    from realtime_swap.train.checkpoint import has_checkpoint, read_state
    from realtime_swap.train.config import TrainConfig
    from realtime_swap.train.faceset import Faceset
    from realtime_swap.train.trainer import Trainer

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    src = Faceset.load(args.src)
    dst = Faceset.load(args.dst)
    previous = read_state(args.out) if args.resume and has_checkpoint(args.out) else None
    model_config = _model_config(args, previous.model_config if previous else None, src.face_type)
    try:
        spec: PresetSpec | None = PRESETS[Preset(model_config.preset)]
    except ValueError:
        spec = None
    train_config = TrainConfig(
        iterations=args.iterations,
        batch_size=args.batch or (spec.batch_size if spec else 4),
        lr=args.lr or (spec.lr if spec else 5e-5),
        optimizer=OptimizerKind(args.optimizer),
        device=args.device,
        amp=args.amp,
        seed=args.seed,
        preview_every=args.preview_every,
        save_every=args.save_every,
        random_warp=args.random_warp,
        flip=args.flip,
        color_transfer=args.color_transfer,
        gan_power=args.gan_power,
        gan_start=args.gan_start,
        workers=args.workers,
        augment_on=AugmentOn(args.augment_on),
    )
    trainer = Trainer(
        src, dst, args.out, model_config, train_config, resume=args.resume, progress=not args.quiet,
        init_from=args.init_from,
    )  # fmt: skip
    result = trainer.run()
    last = result.losses[-1] if result.losses else None
    losses = f", last loss src {last[1]:.4f} dst {last[2]:.4f}" if last else ""
    print(
        f"{'stopped' if result.interrupted else 'done'} at iteration {result.iteration} "
        f"({result.iteration - result.start_iteration} this run, {result.its_per_s:.2f} it/s{losses}); "
        f"checkpoint {result.checkpoint}; preview {result.preview}"
    )
    return EXIT_INTERRUPTED if result.interrupted else 0
