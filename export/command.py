"""The ``export`` subcommand and the one function it calls: checkpoint -> ONNX / DFM / TensorRT engine."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.formats import EXPORT_FORMATS, ExportFormat, format_table
from realtime_swap.errors import ConfigError
from realtime_swap.infer.tensorrt_build import DEFAULT_MAX_BATCH, TRT_MISSING

if TYPE_CHECKING:
    from export.onnx_export import OnnxExport


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """artefact: the file of the requested format; onnx: the ONNX export (the artefact itself for onnx/dfm,
    the metadata sidecar beside a TensorRT engine); engine_cached: TensorRT took the engine from its cache."""

    format: ExportFormat
    artefact: Path
    onnx: OnnxExport
    engine_cached: bool | None = None


def default_output(checkpoint: Path, fmt: ExportFormat, fp16: bool, arch: str, resolution: int) -> Path:
    """<checkpoint>/<arch>_<resolution>[_fp16]<suffix>."""
    return checkpoint / f"{arch}_{resolution}{'_fp16' if fp16 else ''}{EXPORT_FORMATS[fmt].suffix}"


def export_checkpoint(
    checkpoint: str | Path,
    fmt: ExportFormat = ExportFormat.ONNX,
    out: str | Path | None = None,
    fp16: bool = False,
    check_parity: bool = False,
    opset: int = 17,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> ExportOutcome:
    """Export a training checkpoint folder to ``fmt``.

    onnx/dfm: one ONNX file with DFM I/O and metadata (fp16: half weights and compute, float32 I/O).
    tensorrt: an fp32 ONNX beside the engine (same stem, .onnx; it carries the metadata), then the engine
    (FP16 kernels when fp16). check_parity: PyTorch vs ONNX Runtime on the CPU, ModelError when over tolerance.
    Raises ModelError for a missing/corrupt checkpoint, ConfigError for a format this environment cannot make.
    """
    fmt = ExportFormat(fmt)
    spec = EXPORT_FORMATS[fmt]
    missing = spec.missing_modules()
    if "tensorrt" in missing:
        raise ConfigError(TRT_MISSING)
    if missing:
        raise ConfigError(
            f"export to {fmt.value} needs {', '.join(missing)} (pip install 'realtime_swap[{spec.extra}]')"
        )
    from export.onnx_export import export_onnx
    from realtime_swap.train.checkpoint import read_state

    checkpoint = Path(checkpoint)
    state = read_state(checkpoint)
    mc = state.model_config
    target = Path(out) if out is not None else default_output(checkpoint, fmt, fp16, mc.arch.value, mc.resolution)
    if fmt is not ExportFormat.TENSORRT:
        onnx = export_onnx(checkpoint, target, fp16=fp16, opset=opset, parity=check_parity)
        return ExportOutcome(fmt, target, onnx)
    from realtime_swap.infer.tensorrt_build import build_engine

    onnx = export_onnx(checkpoint, target.with_suffix(".onnx"), fp16=False, opset=opset, parity=check_parity)
    build = build_engine(onnx.path, target, fp16=fp16, max_batch=max_batch)
    return ExportOutcome(fmt, build.engine, onnx, engine_cached=build.cached)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained checkpoint to ONNX / DFM / TensorRT",
        description="Export a training checkpoint folder (from `train`) to a deployable model.",
        epilog="formats:\n" + format_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder written by `train --out`")
    parser.add_argument(
        "--format",
        dest="format",
        choices=[f.value for f in ExportFormat],
        default=ExportFormat.ONNX.value,
        help="export format (default: onnx)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output file (default: inside the checkpoint folder)")
    parser.add_argument("--fp16", action="store_true", help="fp16 variant (ONNX: half weights/compute; TRT: FP16)")
    parser.add_argument(
        "--check-parity", action="store_true", help="compare against PyTorch on the CPU and report the max abs error"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default 17)")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"TensorRT: largest batch of the profile (default {DEFAULT_MAX_BATCH}, as --backend tensorrt builds)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``export``; prints what was written. Errors propagate as RealtimeSwapError."""
    outcome = export_checkpoint(
        args.checkpoint,
        ExportFormat(args.format),
        out=args.out,
        fp16=args.fp16,
        check_parity=args.check_parity,
        opset=args.opset,
        max_batch=args.max_batch,
    )
    onnx = outcome.onnx
    size_mb = outcome.artefact.stat().st_size / 1e6
    meta = onnx.metadata
    print(
        f"wrote {outcome.artefact} ({outcome.format.value}, {size_mb:.2f} MB, {meta['architecture']} "
        f"{meta['resolution']} px {meta['face_type']}, {meta['precision']}, {meta['iterations']} iterations)"
    )
    if outcome.format is ExportFormat.TENSORRT:
        state = "from the engine cache" if outcome.engine_cached else "built"
        print(f"engine {state}; metadata in {onnx.path}")
    if onnx.parity is not None:
        print(onnx.parity.summary())
    return 0
