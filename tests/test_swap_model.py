"""SwapModel: DFM-signature models built here, run on the CPU, checked at load; real face content (astronaut)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import skimage.data

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.session import Backend
from realtime_swap.swap import ModelFormat, SwapModel
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import FaceType

RES = 32


def face_crops(n: int, size: int = RES) -> np.ndarray:
    """(n, size, size, 3) float32 BGR [0,1]: the astronaut's face, then shifted/flipped variants."""
    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    crops = []
    for i in range(n):
        y, x = 20 + 6 * i, 150 - 5 * i
        crop = cv2.resize(bgr[y : y + 200, x : x + 200], (size, size), interpolation=cv2.INTER_AREA)
        crops.append(crop[:, ::-1] if i % 2 else crop)
    return np.stack(crops).astype(np.float32) / 255.0


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def dfm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("m") / "tiny.dfm", build_dfm_model(RES, width=8, ae_dims=32))


@pytest.fixture(scope="module")
def morph_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("m") / "morph.dfm", build_dfm_model(RES, width=8, ae_dims=32, morph=True))


@pytest.fixture(scope="module")
def model(dfm_path: Path) -> SwapModel:
    return SwapModel.load(dfm_path, Backend.ORT_CPU)


def test_dfm_defaults(model: SwapModel) -> None:
    assert model.resolution == RES
    assert model.face_type is FaceType.WHOLE_FACE  # DFM files carry no face type
    assert model.spec.format is ModelFormat.DFM
    assert model.backend is Backend.ORT_CPU
    assert not model.has_morph


def test_swap_shapes_and_ranges_on_a_real_face(model: SwapModel) -> None:
    crops = face_crops(2)
    faces, masks = model.swap(crops)
    assert faces.shape == (2, RES, RES, 3) and faces.dtype == np.float32
    assert masks.shape == (2, RES, RES) and masks.dtype == np.float32
    assert faces.min() >= 0.0 and faces.max() <= 1.0
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert faces.std() > 1e-3  # not a constant image
    assert np.abs(faces[0] - faces[1]).max() > 1e-3  # different crops, different swaps


def test_batch_equals_single_calls(model: SwapModel) -> None:
    crops = face_crops(3)
    faces, masks = model.swap(crops)
    for i in range(3):
        face, mask = model.swap(crops[i : i + 1])
        np.testing.assert_allclose(faces[i], face[0], atol=1e-5)
        np.testing.assert_allclose(masks[i], mask[0], atol=1e-5)


def test_fixed_batch_model_is_split(tmp_path: Path) -> None:
    path = write(tmp_path / "b1.dfm", build_dfm_model(RES, width=8, ae_dims=32, dynamic_batch=False))
    fixed = SwapModel.load(path, Backend.ORT_CPU)
    dynamic = SwapModel.load(write(tmp_path / "bn.dfm", build_dfm_model(RES, width=8, ae_dims=32)), Backend.ORT_CPU)
    crops = face_crops(3)
    np.testing.assert_allclose(fixed.swap(crops)[0], dynamic.swap(crops)[0], atol=1e-5)


def test_empty_batch(model: SwapModel) -> None:
    faces, masks = model.swap(np.zeros((0, RES, RES, 3), np.float32))
    assert faces.shape == (0, RES, RES, 3) and masks.shape == (0, RES, RES)


def test_torch_cpu_tensor_in_torch_tensor_out(model: SwapModel) -> None:
    torch = pytest.importorskip("torch")
    crops = face_crops(2)
    faces, masks = model.swap(torch.from_numpy(crops))
    assert isinstance(faces, torch.Tensor) and isinstance(masks, torch.Tensor)
    np.testing.assert_allclose(faces.numpy(), model.swap(crops)[0], atol=1e-6)


@pytest.mark.parametrize(
    ("crops", "needle"),
    [
        (np.zeros((1, RES, RES, 3), np.uint8), "uint8"),
        (np.zeros((1, 16, 16, 3), np.float32), "(1, 16, 16, 3)"),
        (np.zeros((RES, RES, 3), np.float32), f"({RES}, {RES}, 3)"),
    ],
)
def test_bad_crops_are_refused(model: SwapModel, crops: np.ndarray, needle: str) -> None:
    with pytest.raises(ValueError, match="expected crops") as info:
        model.swap(crops)
    assert needle in str(info.value)


def test_morph(morph_path: Path, model: SwapModel) -> None:
    morphing = SwapModel.load(morph_path, Backend.ORT_CPU)
    assert morphing.has_morph
    crops = face_crops(2)
    none, full = morphing.swap(crops, morph=0.0)[0], morphing.swap(crops, morph=1.0)[0]
    assert np.abs(none - full).max() > 1e-4
    np.testing.assert_array_equal(morphing.swap(crops)[0], morphing.swap(crops, morph=0.75)[0])
    with pytest.raises(ConfigError, match=r"morph must be in \[0, 1\]"):
        morphing.swap(crops, morph=1.5)
    with pytest.raises(ConfigError, match="no 'morph_value:0' input"):
        model.swap(crops, morph=0.5)


def test_product_metadata_and_overrides(tmp_path: Path) -> None:
    meta = {
        "producer": "realtime_swap",
        "resolution": str(RES),
        "face_type": "full",
        "architecture": "df",
        "preset": "tiny",
        "recipe": "test",
        "iterations": "2",
    }
    path = write(tmp_path / "own.onnx", build_dfm_model(RES, width=8, ae_dims=32, metadata=meta))
    own = SwapModel.load(path)
    assert own.spec.format is ModelFormat.REALTIME_SWAP
    assert own.face_type is FaceType.FULL
    assert own.spec.metadata["architecture"] == "df"
    assert SwapModel.load(path, face_type=FaceType.HEAD).face_type is FaceType.HEAD
    with pytest.raises(ConfigError, match="takes 32 px crops; resolution 64"):
        SwapModel.load(path, resolution=64)


@pytest.mark.parametrize(
    ("meta", "needle"),
    [
        ({"producer": "realtime_swap", "face_type": "chin"}, "face_type 'chin' is not one of"),
        ({"resolution": "64"}, "metadata says 64 px but 'in_face:0' is 32 px"),
        ({"resolution": "big"}, "resolution 'big' is not an integer"),
    ],
)
def test_bad_metadata_is_refused(tmp_path: Path, meta: dict[str, str], needle: str) -> None:
    path = write(tmp_path / "m.onnx", build_dfm_model(RES, width=8, ae_dims=32, metadata=meta))
    with pytest.raises(ModelError, match=r"model .*m\.onnx") as info:
        SwapModel.load(path, Backend.ORT_CPU)
    assert needle in str(info.value)


def _set_shape(value_info: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d


def _broken(kind: str) -> onnx.ModelProto:
    model = onnx.load_from_string(build_dfm_model(RES, width=8, ae_dims=32))
    graph = model.graph
    if kind == "input name":
        graph.input[0].name = "input:0"
    elif kind == "nchw":
        _set_shape(graph.input[0], [1, 3, 224, 224])
    elif kind == "rank":
        _set_shape(graph.input[0], ["N", RES, RES])
    elif kind == "not square":
        _set_shape(graph.input[0], ["N", RES, 24, 3])
    elif kind == "extra input":
        graph.input.append(onnx.helper.make_tensor_value_info("age:0", onnx.TensorProto.FLOAT, [1]))
    elif kind == "missing output":
        del graph.output[1]
    elif kind == "output channels":
        _set_shape(graph.output[2], ["N", RES, RES, 3])
    elif kind == "output size":
        _set_shape(graph.output[1], ["N", 64, 64, 3])
    elif kind == "int input":
        graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    return model


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("input name", "expected input 'in_face:0' of shape (N,H,W,3), got inputs 'input:0' (N,32,32,3)"),
        ("nchw", "expected input 'in_face:0' of shape (N,H,W,3), got (1,3,224,224): NCHW layout"),
        ("rank", "got (N,32,32): rank 3, not 4"),
        ("not square", "got (N,32,24,3): crops must be square"),
        ("extra input", "unexpected input 'age:0'"),
        ("missing output", "missing output 'out_celeb_face:0'"),
        ("output channels", "expected output 'out_celeb_face_mask:0' of shape (N,H,W,1), got (N,32,32,3)"),
        ("output size", "expected output 'out_celeb_face:0' of shape (N,H,W,3), got (N,64,64,3): the input is 32 px"),
        ("int input", "input 'in_face:0' is int64, expected float32"),
    ],
)
def test_wrong_signature_is_refused_at_load(tmp_path: Path, kind: str, needle: str) -> None:
    path = tmp_path / "bad.onnx"
    onnx.save(_broken(kind), str(path))
    with pytest.raises(ModelError) as info:
        SwapModel.load(path, Backend.ORT_CPU)
    assert f"model {path}" in str(info.value)
    assert needle in str(info.value)


def test_missing_and_non_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model not found"):
        SwapModel.load(tmp_path / "nope.dfm")
    junk = write(tmp_path / "junk.dfm", b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelError, match=r"junk\.dfm"):
        SwapModel.load(junk)
