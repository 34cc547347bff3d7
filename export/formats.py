"""The export formats and what each can do: the one table the ``export`` command and its docs read.

==========  ========  ====================================================  ====  =====  ====  ===  ==========
format      suffix    artefact                                              fp16  batch  meta  gpu  needs
==========  ========  ====================================================  ====  =====  ====  ===  ==========
onnx        .onnx     ONNX, DFM I/O names, metadata_props                   yes   dyn    in    no   onnx
dfm         .dfm      the same ONNX under DeepFaceLive's model suffix       yes   dyn    in    no   onnx
tensorrt    .engine   serialized TensorRT engine (+ the .onnx beside it)    yes   1..N   side  yes  tensorrt
==========  ========  ====================================================  ====  =====  ====  ===  ==========

fp16: an fp16 variant can be produced (ONNX: fp16 weights and compute, float32 I/O; TensorRT: FP16 kernels).
batch: dynamic batch (ONNX) or the optimisation profile's range 1..N (TensorRT, N = max_batch).
meta: metadata inside the file (ONNX ``metadata_props``) or beside it (TensorRT engines cannot carry it; the
exporter keeps the ONNX with the same stem next to the engine, which is where the swap loader reads it).
"""

from __future__ import annotations

import enum
import importlib.util
from dataclasses import dataclass


class ExportFormat(str, enum.Enum):
    """Export targets; the CLI's ``--format`` choices."""

    ONNX = "onnx"
    DFM = "dfm"
    TENSORRT = "tensorrt"


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """What an export format is and can do.

    suffix: file suffix of the artefact. fp16: has an fp16 variant. dynamic_batch: batch size chosen at run time.
    metadata_inside: metadata travels inside the file. needs_gpu: building it needs a CUDA GPU.
    requires: Python modules the export needs. extra: the package extra that installs them.
    """

    format: ExportFormat
    suffix: str
    description: str
    fp16: bool
    dynamic_batch: bool
    metadata_inside: bool
    needs_gpu: bool
    requires: tuple[str, ...]
    extra: str

    def missing_modules(self) -> list[str]:
        """The required modules this environment lacks."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


EXPORT_FORMATS: dict[ExportFormat, FormatSpec] = {
    ExportFormat.ONNX: FormatSpec(
        ExportFormat.ONNX,
        ".onnx",
        "ONNX (opset 17) with DeepFaceLive DFM I/O and metadata_props; runs on ONNX Runtime CPU/CUDA/TensorRT EP",
        fp16=True,
        dynamic_batch=True,
        metadata_inside=True,
        needs_gpu=False,
        requires=("torch", "onnx"),
        extra="train",
    ),
    ExportFormat.DFM: FormatSpec(
        ExportFormat.DFM,
        ".dfm",
        "the ONNX export under DeepFaceLive's .dfm suffix (DeepFaceLive loads .dfm files as ONNX)",
        fp16=True,
        dynamic_batch=True,
        metadata_inside=True,
        needs_gpu=False,
        requires=("torch", "onnx"),
        extra="train",
    ),
    ExportFormat.TENSORRT: FormatSpec(
        ExportFormat.TENSORRT,
        ".engine",
        "serialized TensorRT engine for this GPU and TensorRT version (the .onnx with its metadata kept beside it)",
        fp16=True,
        dynamic_batch=True,
        metadata_inside=False,
        needs_gpu=True,
        requires=("torch", "onnx", "tensorrt"),
        extra="trt",
    ),
}


def format_table() -> str:
    """A plain-text table of the formats and their capabilities (for ``export --list-formats``)."""
    head = f"{'format':<10} {'suffix':<8} {'fp16':<5} {'dyn-batch':<9} {'meta-inside':<11} {'gpu':<4} requires"
    lines = [head, "-" * len(head)]
    for spec in EXPORT_FORMATS.values():

        def yn(flag: bool) -> str:
            return "yes" if flag else "no"

        lines.append(
            f"{spec.format.value:<10} {spec.suffix:<8} {yn(spec.fp16):<5} {yn(spec.dynamic_batch):<9} "
            f"{yn(spec.metadata_inside):<11} {yn(spec.needs_gpu):<4} {', '.join(spec.requires)}"
        )
    return "\n".join(lines)
