"""The ``make-model`` subcommand: the path to a swap model of your own face in one command.

It chains what ``extract``, ``train`` and ``export`` do, in one folder ``--out``:

1. ``src_faceset/`` — faces of the identity to produce (celebrity videos or photos, ``--src``);
2. ``dst_faceset/`` — faces of the person in the live video (your own recording, ``--dst``);
3. ``checkpoint/`` — DF training of dst faces into the src identity, with previews and loss plots, stopped at
   ``--iterations`` or after ``--minutes``, whichever comes first;
4. ``model.onnx`` — the export the live engine loads; the last line printed is the ``live`` command to run.

Every step resumes: extraction skips frames already in a faceset, training continues its checkpoint, so running
the same command again trains further (raise ``--iterations`` or give more ``--minutes``).
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from pathlib import Path

from realtime_swap.errors import ConfigError
from realtime_swap.train.config import Arch, Preset
from realtime_swap.types import FaceType

EXIT_INTERRUPTED = 130
DEFAULT_ITERATIONS = 20000
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class MakeModelPlan:
    """What ``make-model`` does. src/dst: videos, recordings, images or image folders; out: the working folder.
    iterations: train until this iteration count (None: ``DEFAULT_ITERATIONS`` unless ``minutes`` is given,
    then as many as fit); minutes: wall-time box of this run's training (None: no box). preset / resolution /
    arch: the model (resolution None: the preset's); every: analyse one video frame in N; device: torch device
    (auto, cpu, cuda); preview_every / save_every: iterations between previews / checkpoints."""

    src: tuple[Path, ...]
    dst: tuple[Path, ...]
    out: Path
    iterations: int | None = None
    minutes: float | None = None
    preset: Preset = Preset.LIVE
    resolution: int | None = None
    arch: Arch = Arch.DF
    every: int = 1
    device: str = "auto"
    preview_every: int = 200
    save_every: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.src or not self.dst:
            raise ConfigError("make-model: --src and --dst each need at least one video, photo or folder")
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"make-model: --iterations must be >= 1, got {self.iterations}")
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"make-model: --minutes must be > 0, got {self.minutes}")
        if self.every < 1:
            raise ConfigError(f"make-model: --every must be >= 1, got {self.every}")

    @property
    def src_faceset(self) -> Path:
        return self.out / "src_faceset"

    @property
    def dst_faceset(self) -> Path:
        return self.out / "dst_faceset"

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint"

    @property
    def model(self) -> Path:
        return self.out / MODEL_FILE


@dataclass(frozen=True)
class MakeModelResult:
    """model: the exported ONNX (None when training was interrupted by the user); iteration: the checkpoint's;
    timed_out: the --minutes box ended this run's training; interrupted: Ctrl-C did."""

    model: Path | None
    checkpoint: Path
    iteration: int
    iterations_this_run: int
    its_per_s: float
    timed_out: bool
    interrupted: bool
    src_faces: int
    dst_faces: int
    preview: Path | None


def live_command(model: Path) -> str:
    """The ``live`` line that runs ``model`` on the webcam into a virtual camera."""
    return f"realtime-swap live --model {model} --source 0 --vcam"


def make_model(plan: MakeModelPlan) -> MakeModelResult:
    """Extract both facesets, train (resuming, time-boxed), export; see the module docstring.

    Raises SourceError for a missing or unreadable input, ConfigError when a faceset ends up empty or the
    options do not fit, ModelError for a corrupt checkpoint.
    """
    from export.command import export_checkpoint
    from export.formats import ExportFormat
    from realtime_swap.train.checkpoint import has_checkpoint, read_state
    from realtime_swap.train.config import PRESETS, PresetSpec, TrainConfig, model_config_for
    from realtime_swap.train.extract import ExtractOptions, FaceExtractor, extract_inputs
    from realtime_swap.train.faceset import Faceset
    from realtime_swap.train.trainer import Trainer

    resume = has_checkpoint(plan.checkpoint)
    previous = read_state(plan.checkpoint) if resume else None
    model_config = (
        previous.model_config
        if previous is not None
        else model_config_for(plan.arch, plan.preset, plan.resolution, FaceType.WHOLE_FACE)
    )
    extractor = FaceExtractor(
        ExtractOptions(resolution=model_config.resolution, face_type=model_config.face_type, every=plan.every)
    )
    for inputs, folder in ((plan.src, plan.src_faceset), (plan.dst, plan.dst_faceset)):
        extractor.reset()
        summary = extract_inputs(inputs, folder, progress=plan.progress, extractor=extractor)
        print(f"{folder}: {summary.format()}")
    src, dst = Faceset.load(plan.src_faceset), Faceset.load(plan.dst_faceset)
    for name, faceset in (("--src", src), ("--dst", dst)):
        if len(faceset) == 0:
            raise ConfigError(f"make-model: no face was kept from {name}; give videos or photos with a visible face")

    try:
        spec: PresetSpec | None = PRESETS[Preset(model_config.preset)]
    except ValueError:  # a custom-width checkpoint being resumed
        spec = None
    start = previous.iteration if previous is not None else 0
    if plan.iterations is not None:
        target = plan.iterations
    elif plan.minutes is not None:
        target = start + 10**9  # the time box ends the run
    else:
        target = DEFAULT_ITERATIONS
    if previous is not None and target <= previous.iteration:
        raise ConfigError(
            f"make-model: {plan.checkpoint} is already at iteration {previous.iteration}; give --iterations above it"
        )
    train_config = TrainConfig(
        iterations=target,
        batch_size=spec.batch_size if spec else 4,
        lr=spec.lr if spec else 5e-5,
        device=plan.device,
        preview_every=plan.preview_every,
        save_every=plan.save_every,
    )
    trainer = Trainer(src, dst, plan.checkpoint, model_config, train_config, resume=resume, progress=plan.progress)
    timed_out = threading.Event()

    def end_of_box() -> None:
        timed_out.set()
        trainer.request_stop()

    timer = threading.Timer(plan.minutes * 60.0, end_of_box) if plan.minutes is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        trained = trainer.run()
    finally:
        if timer is not None:
            timer.cancel()
    interrupted = trained.interrupted and not timed_out.is_set()
    model = None
    if not interrupted:
        export_checkpoint(plan.checkpoint, ExportFormat.ONNX, out=plan.model)
        model = plan.model
    return MakeModelResult(
        model=model,
        checkpoint=plan.checkpoint,
        iteration=trained.iteration,
        iterations_this_run=trained.iteration - trained.start_iteration,
        its_per_s=trained.its_per_s,
        timed_out=timed_out.is_set(),
        interrupted=interrupted,
        src_faces=len(src),
        dst_faces=len(dst),
        preview=trained.preview,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``make-model`` subcommand."""
    p = subparsers.add_parser(
        "make-model",
        help="your own face: extract both facesets, train, export, and print the live command",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--src", type=Path, nargs="+", required=True, help="videos/photos/folders of the identity to wear")
    p.add_argument("--dst", type=Path, nargs="+", required=True, help="your recording(s): the face in the live video")
    p.add_argument("--out", type=Path, required=True, help="working folder (facesets, checkpoint, model.onnx)")
    p.add_argument("--iterations", type=int, help=f"train until this iteration count (default {DEFAULT_ITERATIONS})")
    p.add_argument("--minutes", type=float, help="stop this run's training after this many minutes (then export)")
    p.add_argument("--preset", choices=[x.value for x in Preset], default=Preset.LIVE.value, help="model size")
    p.add_argument("--resolution", type=int, help="model px, 64..320 step 16 (default: the preset's)")
    p.add_argument("--every", type=int, default=1, help="analyse one video frame in N (default 1)")
    p.add_argument("--device", default="auto", help="training device: auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--preview-every", type=int, default=200, help="iterations between preview PNGs (default 200)")
    p.add_argument("--save-every", type=int, default=1000, help="iterations between checkpoints (default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``make-model``; the last line printed is the ``live`` command (or how to resume after Ctrl-C)."""
    plan = MakeModelPlan(
        src=tuple(args.src),
        dst=tuple(args.dst),
        out=args.out,
        iterations=args.iterations,
        minutes=args.minutes,
        preset=Preset(args.preset),
        resolution=args.resolution,
        every=args.every,
        device=args.device,
        preview_every=args.preview_every,
        save_every=args.save_every,
        progress=not args.quiet,
    )
    result = make_model(plan)
    why = "time box reached" if result.timed_out else "stopped" if result.interrupted else "done"
    print(
        f"training {why} at iteration {result.iteration} ({result.iterations_this_run} this run, "
        f"{result.its_per_s:.2f} it/s) on {result.src_faces} src / {result.dst_faces} dst faces; "
        f"checkpoint {result.checkpoint}; preview {result.preview}"
    )
    if result.model is None:
        print("run the same command again to resume training, then it exports")
        return EXIT_INTERRUPTED
    print(f"model: {result.model}")
    print(live_command(result.model))
    return 0
