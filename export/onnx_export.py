"""PyTorch checkpoint -> ONNX with DeepFaceLive DFM-compatible I/O, an fp16 variant, and a parity check.

The DFM contract (checked against DeepFaceLive's ``modelhub/DFLive/DFMModel.py`` and DeepFaceLab's
``Model_SAEHD.export_dfm``):

* one input ``in_face:0``: (N, H, W, 3) float32, BGR in [0, 1], NHWC (DFL's TensorFlow graph takes an NHWC input
  tensor named ``in_face`` and transposes it to NCHW inside; DeepFaceLive reads H, W from ``inputs[0].shape[1:3]``);
* three outputs **in this order**: ``out_face_mask:0`` (N, H, W, 1), the destination face's mask as the dst
  path predicts it; ``out_celeb_face:0`` (N, H, W, 3), the swapped face, BGR [0, 1]; ``out_celeb_face_mask:0``
  (N, H, W, 1), its mask. DeepFaceLive calls ``sess.run(None, ...)`` and unpacks the outputs by position, so
  the order is part of the contract;
* DeepFaceLive also accepts a second input ``morph_value:0`` (1,) for SAEHD "AMP" models; our DF/LIAE exports
  do not have it, which DeepFaceLive treats as its type-1 model.

DFL exports with tf2onnx at opset 12; we export opset 17 (the torch exporter's floor for its newer ops), which
ONNX Runtime >= 1.12 reads. The batch dimension is dynamic ("N").

Every export carries ``metadata_props``: producer = "realtime_swap", resolution, face_type, architecture,
preset, recipe (JSON: model and training configuration, faceset sizes), iterations, precision (fp32/fp16),
io = "dfm".
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.session import Backend, create_ort_session
from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_OUTPUTS, PRODUCER
from realtime_swap.train.archs import SwapAutoencoder
from realtime_swap.train.checkpoint import CheckpointState, load_model

DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2


class DFMExportModule(nn.Module):
    """Wraps a swap model in the DFM signature: (N, H, W, 3) BGR [0, 1] -> the three NHWC outputs."""

    def __init__(self, model: SwapAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, in_face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model.swap(in_face.permute(0, 3, 1, 2))
        return (
            out.dst_mask.permute(0, 2, 3, 1),
            out.celeb_face.permute(0, 2, 3, 1),
            out.celeb_mask.permute(0, 2, 3, 1),
        )


@dataclass(frozen=True, slots=True)
class ParityReport:
    """Max abs error per output between PyTorch (fp32) and ONNX Runtime CPU on the same input batch."""

    errors: dict[str, float]
    tolerance: float
    batch: int

    @property
    def max_abs_error(self) -> float:
        return max(self.errors.values())

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.2e}" for k, v in self.errors.items())
        verdict = "ok" if self.passed else "FAILED"
        return f"parity {verdict}: max abs error {self.max_abs_error:.2e} (tolerance {self.tolerance:.0e}; {parts})"


@dataclass(frozen=True, slots=True)
class OnnxExport:
    """A written ONNX export: path, precision, size in bytes, metadata, and the parity report when checked."""

    path: Path
    fp16: bool
    size_bytes: int
    metadata: dict[str, str]
    parity: ParityReport | None


def export_metadata(state: CheckpointState, fp16: bool) -> dict[str, str]:
    """The metadata_props of an export of this checkpoint (all values strings)."""
    mc = state.model_config
    recipe = {
        "model": mc.to_dict(),
        "train": state.train_config.to_dict(),
        "data": {k: state.extra[k] for k in ("src_faces", "dst_faces") if k in state.extra},
    }
    meta = {
        "producer": PRODUCER,
        "resolution": str(mc.resolution),
        "face_type": mc.face_type.value,
        "architecture": mc.arch.value,
        "preset": mc.preset,
        "recipe": json.dumps(recipe, sort_keys=True),
        "iterations": str(state.iteration),
        "precision": "fp16" if fp16 else "fp32",
        "io": "dfm",
    }
    if state.extra.get("dst_faceset"):  # whose face the model was trained to take in (the live engine names it)
        meta["dst_faceset"] = str(state.extra["dst_faceset"])
    return meta


def module_to_onnx(model: SwapAutoencoder, opset: int = DEFAULT_OPSET) -> bytes:
    """Trace a model (on the CPU, eval mode) into DFM-signature ONNX bytes with a dynamic batch."""
    if opset < 17:
        raise ConfigError(f"ONNX opset must be >= 17, got {opset}")
    model = model.cpu().eval()
    res = model.config.resolution
    wrapper = DFMExportModule(model).eval()
    dummy = torch.rand(1, res, res, 3, generator=torch.Generator().manual_seed(0))
    dynamic = {name: {0: "N"} for name in (DFM_INPUT, *DFM_OUTPUTS)}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; the
        # TorchScript path gives the exact names and dynamic axes the DFM contract needs.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        with tempfile.TemporaryDirectory(prefix="realtime_swap_export_") as tmp:
            file = Path(tmp) / "model.onnx"
            torch.onnx.export(
                wrapper,
                (dummy,),
                file,
                dynamo=False,
                opset_version=opset,
                input_names=[DFM_INPUT],
                output_names=list(DFM_OUTPUTS),
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
            onnx_bytes = file.read_bytes()
    return _static_output_shapes(onnx_bytes, res)


def _static_output_shapes(onnx_bytes: bytes, resolution: int) -> bytes:
    """Declare the outputs as (N, S, S, C): the tracer leaves H and W symbolic after the dense reshape."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    channels = {DFM_OUTPUTS[0]: 1, DFM_OUTPUTS[1]: 3, DFM_OUTPUTS[2]: 1}
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(dims[1:], (resolution, resolution, channels[output.name]), strict=True):
            dim.Clear()
            dim.dim_value = value
    return bytes(model.SerializeToString())


def to_fp16(onnx_bytes: bytes) -> bytes:
    """fp16 weights and compute with float32 I/O (Cast nodes at the edges), so the DFM signature is unchanged.

    Uses onnxruntime's ``transformers.float16`` converter (shipped in the onnxruntime wheel).
    """
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise ConfigError(f"fp16 export needs onnxruntime's float16 converter ({exc})") from exc
    model = onnx.load_from_string(onnx_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "values truncated to fp16 range": none are, for sigmoids
        converted = convert_float_to_float16(model, keep_io_types=True)
    _topological_sort(converted.graph)
    return bytes(converted.SerializeToString())


def _topological_sort(graph: Any) -> None:
    """Reorder graph nodes so every input is produced before use (the fp16 converter appends its input Casts
    at the end, which ONNX's checker rejects)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            raise ModelError(f"ONNX graph has a cycle or dangling inputs at node '{pending[0].name}'")
        for node in ready:
            known.update(node.output)
            ordered.append(node)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def with_metadata(onnx_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """Set metadata_props (replacing keys already present) and check the model."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = PRODUCER
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file. Raises ModelError for a missing or unreadable file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"cannot read ONNX {path}: {exc}") from exc
    return {p.key: p.value for p in model.metadata_props}


def check_parity(
    model: SwapAutoencoder,
    onnx_model: bytes | str | Path,
    tolerance: float = FP32_TOLERANCE,
    faces: np.ndarray | None = None,
    batch: int = 2,
    seed: int = 0,
) -> ParityReport:
    """Run PyTorch (fp32, CPU) and ONNX Runtime (CPU) on the same faces and compare every output.

    faces: (N, S, S, 3) float32 BGR [0, 1]; default: ``batch`` uniform-random crops from ``seed`` (a batch
    above 1 also exercises the dynamic batch axis).
    """
    res = model.config.resolution
    if faces is None:
        faces = np.random.default_rng(seed).random((batch, res, res, 3), dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.float32)
    wrapper = DFMExportModule(model.cpu().eval()).eval()
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(torch.from_numpy(faces))]
    session = create_ort_session(onnx_model, Backend.ORT_CPU)
    got = session.run(None, {DFM_INPUT: faces})
    errors = {}
    for name, want, have in zip(DFM_OUTPUTS, expected, got, strict=True):
        if have.shape != want.shape:
            raise ModelError(f"ONNX output '{name}' is {have.shape}, PyTorch gives {want.shape}")
        errors[name] = float(np.max(np.abs(have.astype(np.float32) - want)))
    return ParityReport(errors, tolerance, int(faces.shape[0]))


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    parity: bool = False,
) -> OnnxExport:
    """Export a checkpoint folder to one ONNX file (any suffix: .onnx, .dfm) with metadata.

    fp16: convert weights/compute to float16 (I/O stays float32). parity: compare against PyTorch on the CPU
    (tolerance 1e-4 at fp32, 2e-2 at fp16) and raise ModelError when it fails. Raises ModelError for a missing
    or corrupt checkpoint.
    """
    model, state = load_model(checkpoint, device="cpu")
    onnx_bytes = module_to_onnx(model, opset)
    if fp16:
        onnx_bytes = to_fp16(onnx_bytes)
    onnx_bytes = with_metadata(onnx_bytes, export_metadata(state, fp16))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onnx_bytes)
    report = None
    if parity:
        report = check_parity(model, onnx_bytes, FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
        if not report.passed:
            raise ModelError(f"{out}: {report.summary()}")
    return OnnxExport(out, fp16, len(onnx_bytes), export_metadata(state, fp16), report)
