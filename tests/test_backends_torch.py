"""The torch backend: ONNX graphs converted back to torch match ONNX Runtime; unsupported ops are refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

import torch

from realtime_swap.errors import ModelError
from realtime_swap.infer.onnx_torch import OnnxModule, host_scalar
from realtime_swap.infer.session import Backend
from realtime_swap.swap import SwapModel
from realtime_swap.swap.synthetic import build_dfm_model

RES = 32


def face_crops(n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) float32 BGR [0,1] crops of the astronaut's face, shifted per index."""
    import cv2
    import skimage.data

    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    crops = [cv2.resize(bgr[20 + 6 * i : 220 + 6 * i, 150 - 5 * i : 350 - 5 * i], (size, size)) for i in range(n)]
    return np.stack(crops).astype(np.float32) / 255.0


class _ExportedDF(torch.nn.Module):
    """A small DF-style autoencoder written in torch, exported by torch.onnx (dynamic batch reshapes etc.)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, 2, 2),
            torch.nn.LeakyReLU(0.1),
            torch.nn.Conv2d(8, 16, 3, 2, 1),
            torch.nn.InstanceNorm2d(16, affine=True),
            torch.nn.LeakyReLU(0.1),
            torch.nn.MaxPool2d(2),
        )
        self.dense = torch.nn.Linear(16 * 4 * 4, 64)
        self.inter = torch.nn.Linear(64, 16 * 4 * 4)
        self.up1 = torch.nn.Conv2d(16, 32, 3, padding=1, padding_mode="reflect")
        self.up2 = torch.nn.ConvTranspose2d(8, 8, 4, 2, 1)
        self.face = torch.nn.Conv2d(8, 3, 1)
        self.mask = torch.nn.Conv2d(8, 1, 1)
        self.dst_mask = torch.nn.Conv2d(8, 1, 1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.enc(x.permute(0, 3, 1, 2))
        y = self.inter(torch.nn.functional.gelu(self.dense(y.flatten(1))))
        y = y.reshape(y.shape[0], 16, 4, 4)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        y = torch.nn.functional.pixel_shuffle(torch.nn.functional.leaky_relu(self.up1(y), 0.1), 2)  # 8 x 8x8
        y = torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest")  # 16
        y = torch.nn.functional.interpolate(self.up2(y), size=(RES, RES), mode="bilinear", align_corners=False)
        y = torch.clamp(y, -3.0, 3.0)
        face = torch.sigmoid(self.face(y)).permute(0, 2, 3, 1)
        mask = torch.sigmoid(self.mask(y)).permute(0, 2, 3, 1)
        dst_mask = torch.sigmoid(self.dst_mask(y)).permute(0, 2, 3, 1)
        return dst_mask, face, mask


def _export(module: torch.nn.Module, path: Path) -> Path:
    names = ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.rand(2, RES, RES, 3),),
            str(path),
            input_names=["in_face:0"],
            output_names=names,
            dynamic_axes={name: {0: "N"} for name in ["in_face:0", *names]},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def exported_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_ExportedDF(), tmp_path_factory.mktemp("t") / "exported.onnx")


def test_exported_graph_uses_the_ops_it_should(exported_path: Path) -> None:
    ops = {n.op_type for n in onnx.load(str(exported_path)).graph.node}
    assert {"Shape", "Gather", "Reshape", "DepthToSpace", "ConvTranspose", "Resize", "Pad"} <= ops


def test_torch_matches_ort_on_a_torch_export(exported_path: Path) -> None:
    crops = face_crops(3, RES)
    ort_faces, ort_masks = SwapModel.load(exported_path, Backend.ORT_CPU).swap(crops)
    torch_model = SwapModel.load(exported_path, Backend.TORCH)
    assert torch_model.backend is Backend.TORCH
    faces, masks = torch_model.swap(crops)
    np.testing.assert_allclose(faces, ort_faces, atol=1e-4)
    np.testing.assert_allclose(masks, ort_masks, atol=1e-4)


@pytest.mark.parametrize("morph", [0.0, 0.4, 1.0])
def test_torch_matches_ort_on_a_dfm_with_morph(tmp_path: Path, morph: float) -> None:
    path = tmp_path / "morph.dfm"
    path.write_bytes(build_dfm_model(RES, width=8, ae_dims=32, morph=True))
    crops = face_crops(2, RES)
    expected = SwapModel.load(path, Backend.ORT_CPU).swap(crops, morph=morph)
    got = SwapModel.load(path, Backend.TORCH).swap(crops, morph=morph)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_converted_graph_compiles_without_graph_breaks() -> None:
    module = OnnxModule(onnx.load_from_string(build_dfm_model(RES, width=8, ae_dims=32, morph=True))).eval()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(torch.rand(2, RES, RES, 3), host_scalar(0.6))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


def test_unsupported_ops_are_listed(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Transpose", ["in_face:0"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Einsum", ["t", "t"], ["e"], equation="nchw,nchw->nchw"),
        helper.make_node("Hardmax", ["e"], ["h"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("in_face:0", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    with pytest.raises(ModelError, match="cannot convert ops Einsum, Hardmax"):
        OnnxModule(helper.make_model(graph), "g.onnx")


def test_tensors_made_from_nothing_go_to_the_modules_device() -> None:
    """ConstantOfShape, Range and Expand of a host constant make tensors with no input tensor to copy the device
    from: on a CUDA module they must land on CUDA, not the CPU. The meta device stands in for CUDA here."""
    from onnx import TensorProto, helper, numpy_helper

    const = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.5])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["filled"], value=const),
        helper.make_node("Add", ["x", "filled"], ["a"]),
        helper.make_node("Range", ["start", "limit", "delta"], ["ramp"]),
        helper.make_node("Add", ["a", "ramp"], ["b"]),
        helper.make_node("Expand", ["ones", "shape"], ["wide"]),
        helper.make_node("Cast", ["wide"], ["wide_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["b", "wide_f"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([2, 3], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "start"),
        numpy_helper.from_array(np.array(3.0, np.float32), "limit"),
        numpy_helper.from_array(np.array(1.0, np.float32), "delta"),
        numpy_helper.from_array(np.ones((1, 3), np.int64), "ones"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=inits,
    )
    module = OnnxModule(helper.make_model(graph), "g.onnx").eval()
    x = torch.zeros(2, 3)
    (on_cpu,) = module(x)
    np.testing.assert_allclose(on_cpu.numpy(), np.tile([1.5, 2.5, 3.5], (2, 1)))
    (on_meta,) = module.to("meta")(x.to("meta"))
    assert on_meta.device.type == "meta" and tuple(on_meta.shape) == (2, 3)


def test_ops_read_their_constant_parameters_on_the_host() -> None:
    """Resize's scales and Pad's fill value are float constants: read from the device they would synchronize it
    (and fail a CUDA graph capture). The meta device, which has no values to read, stands in for CUDA."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Pad", ["up", "pads", "fill"], ["y"], mode="constant"),
    ]  # fmt: skip
    inits = [
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
        numpy_helper.from_array(np.array(0.25, np.float32), "fill"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 6, 6])],
        initializer=inits,
    )
    module = OnnxModule(helper.make_model(graph), "g.onnx").eval()
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    (on_cpu,) = module(x)
    assert on_cpu[0, 0, 0, 0] == 0.25 and on_cpu[0, 0, 1:5, 1:5].tolist() == np.kron(x[0, 0], np.ones((2, 2))).tolist()
    (on_meta,) = module.to("meta")(x.to("meta"))
    assert on_meta.device.type == "meta" and tuple(on_meta.shape) == (1, 1, 6, 6)
