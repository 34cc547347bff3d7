"""DFMs made the way DeepFaceLab makes them (TF1 NCHW graphs through tf2onnx at opset 12, tests/fixtures/dfm):
recognised, run on ort-cpu and torch against TensorFlow's own outputs, morph, DeepFaceLive's loader and mask
rules (``--mask``), tf2onnx's opset-12 forms in the ONNX→torch converter, and live runs that swap."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
from conftest import ROOT, run_cli

from realtime_swap.infer.session import Backend
from realtime_swap.swap import FaceMask, ModelFormat, SwapModel
from realtime_swap.swap.model import DFM_INPUT, DFM_MORPH, OUT_CELEB_FACE, OUT_CELEB_MASK, OUT_FACE_MASK
from realtime_swap.types import FaceType

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "dfm"
# name -> (resolution, takes morph_value:0)
CASES = {"df_64": (64, False), "liae_32": (32, False), "liae_udt_64": (64, False), "amp_64": (64, True)}
BACKENDS = (Backend.ORT_CPU, Backend.TORCH)
OUTPUTS = (OUT_FACE_MASK, OUT_CELEB_FACE, OUT_CELEB_MASK)  # DeepFaceLab's order; DeepFaceLive unpacks by position
TOL = 1e-4


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def morphs(ref: dict[str, np.ndarray]) -> list[float | None]:
    return [float(m) for m in ref["morph"]] if "morph" in ref else [None]


def expected(ref: dict[str, np.ndarray], morph: float | None) -> list[np.ndarray]:
    suffix = "" if morph is None else f"@{morph}"
    return [ref[name.removesuffix(":0") + suffix] for name in OUTPUTS]


def feeds(x: np.ndarray, morph: float | None) -> dict[str, np.ndarray]:
    return {DFM_INPUT: x} if morph is None else {DFM_INPUT: x, DFM_MORPH: np.array([morph], np.float32)}


@pytest.fixture(scope="module")
def loaded() -> Iterator[dict[tuple[str, Backend], SwapModel]]:
    models: dict[tuple[str, Backend], SwapModel] = {}
    yield models
    for model in models.values():
        model.close()


def get(loaded: dict[tuple[str, Backend], SwapModel], name: str, backend: Backend) -> SwapModel:
    if (name, backend) not in loaded:
        loaded[name, backend] = SwapModel.load(FIXTURES / f"{name}.dfm", backend)
    return loaded[name, backend]


@pytest.mark.parametrize("name", CASES)
def test_fixture_is_what_deepfacelab_writes(name: str) -> None:
    path = FIXTURES / f"{name}.dfm"
    assert path.stat().st_size <= 2_000_000
    model = onnx.load(str(path))
    assert model.producer_name == "tf2onnx"
    assert {o.domain: o.version for o in model.opset_import}[""] == 12
    inputs = [i.name for i in model.graph.input]
    assert inputs == ([DFM_INPUT, DFM_MORPH] if CASES[name][1] else [DFM_INPUT])
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param.startswith("unk__")  # TF's None batch, as tf2onnx names it


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_recognised_as_a_dfm(loaded: dict[tuple[str, Backend], SwapModel], name: str, backend: Backend) -> None:
    model = get(loaded, name, backend)
    resolution, has_morph = CASES[name]
    assert model.spec.format is ModelFormat.DFM
    assert model.resolution == resolution
    assert model.has_morph is has_morph
    assert model.face_type is FaceType.WHOLE_FACE
    assert model.backend is backend


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_outputs_match_tensorflow(loaded: dict[tuple[str, Backend], SwapModel], name: str, backend: Backend) -> None:
    model = get(loaded, name, backend)
    ref = reference(name)
    for morph in morphs(ref):
        got = model.runner.run(feeds(ref["in_face"], morph), list(OUTPUTS))
        for out, want, label in zip(got, expected(ref, morph), OUTPUTS, strict=True):
            assert out.shape == want.shape, label
            diff = float(np.abs(out - want).max())
            assert diff <= TOL, f"{name} on {backend.value}, morph {morph}: {label} differs by {diff:.2e}"
        faces, masks = model.swap(ref["in_face"], morph=morph)  # the engine's own call: celeb face + its mask
        np.testing.assert_allclose(faces, expected(ref, morph)[1], atol=TOL)
        np.testing.assert_allclose(masks, expected(ref, morph)[2][..., 0], atol=TOL)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_morph_moves_the_output_as_tensorflow_does(
    loaded: dict[tuple[str, Backend], SwapModel], backend: Backend
) -> None:
    model = get(loaded, "amp_64", backend)
    ref = reference("amp_64")
    values = morphs(ref)
    runs = {m: model.runner.run(feeds(ref["in_face"], m), list(OUTPUTS)) for m in values}
    for a, b in itertools.pairwise(values):
        for i, label in enumerate(OUTPUTS):
            moved, want = runs[b][i] - runs[a][i], expected(ref, b)[i] - expected(ref, a)[i]
            np.testing.assert_allclose(moved, want, atol=2 * TOL, err_msg=f"{label} from morph {a} to {b}")
            if label == OUT_FACE_MASK:  # the dst decoder's mask reads inter_dst only: morph leaves it alone
                assert np.abs(want).max() <= TOL
            else:
                assert np.abs(want).max() > 1e-2, f"the reference {label} does not move from {a} to {b}"
    default, _ = model.swap(ref["in_face"])  # DeepFaceLive's default morph, 0.75
    np.testing.assert_allclose(default, expected(ref, 0.75)[1], atol=TOL)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_any_batch_size(loaded: dict[tuple[str, Backend], SwapModel], name: str, backend: Backend) -> None:
    model = get(loaded, name, backend)
    ref = reference(name)
    x = ref["in_face"]
    batch = np.concatenate([x, x[:1, ::-1]])  # 3 faces through the unk__ batch dimension
    faces, masks = model.swap(batch)
    single, single_mask = model.swap(x[1:2])
    np.testing.assert_allclose(faces[1:2], single, atol=TOL)
    np.testing.assert_allclose(masks[1:2], single_mask, atol=TOL)
    want = expected(ref, 0.75 if CASES[name][1] else None)[1]
    np.testing.assert_allclose(faces[:2], want, atol=TOL)


def test_tf2onnx_morph_graph_compiles_without_graph_breaks() -> None:
    """tf2onnx's shape arithmetic for the morph slice (Squeeze, Cast int32, Equal, Concat) stays on the host."""
    import torch

    from realtime_swap.infer.onnx_torch import OnnxModule, host_scalar

    module = OnnxModule(onnx.load(str(FIXTURES / "amp_64.dfm")), "amp_64.dfm").eval()
    ref = reference("amp_64")
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(torch.from_numpy(ref["in_face"]), host_scalar(0.5))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


def deepfacelive_convert(path: Path, crop: np.ndarray, morph: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """What DeepFaceLive's ``DFMModel`` does with a file: in_face* first input (its H, W the resolution), an
    optional morph_value* second input, the uint8 crop /255, outputs unpacked by position, and the two masks
    multiplied. crop: (H,W,3) uint8 BGR. Returns (celeb face (H,W,3) float32, mask (H,W,1) float32)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    assert 1 <= len(inputs) <= 2 and "in_face" in inputs[0].name
    assert len(inputs) == 1 or "morph_value" in inputs[1].name
    height, width = inputs[0].shape[1:3]
    assert (height, width) == crop.shape[:2]
    feed = {"in_face:0": crop[None].astype(np.float32) / 255.0}
    if len(inputs) == 2:
        feed["morph_value:0"] = np.float32([morph])
    face_mask, celeb, celeb_mask = sess.run(None, feed)
    return celeb[0], (face_mask * celeb_mask)[0]


@pytest.mark.parametrize("name", [*CASES, "demo_swap"])
def test_deepfacelives_loader_logic(name: str) -> None:
    """Both the tf2onnx fixtures and a project export (the shipped demo model) read as DeepFaceLive reads them."""
    path = ROOT / "trained_models" / "demo_swap" / "demo_swap.onnx" if name == "demo_swap" else FIXTURES / f"{name}.dfm"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    model = SwapModel.load(path, Backend.ORT_CPU)
    size = model.resolution
    crop = (np.indices((size, size, 3)).sum(axis=0) * 7 % 256).astype(np.uint8)
    celeb, mask = deepfacelive_convert(path, crop)
    assert celeb.shape == (size, size, 3) and mask.shape == (size, size, 1)
    face, own_mask = model.swap(crop[None].astype(np.float32) / 255.0)
    np.testing.assert_allclose(celeb, face[0], atol=1e-5)  # position 1 is the celeb face in both readings
    model.close()
    assert own_mask.shape == (1, size, size)


def write_face_clip(path: Path, frames: int) -> Path:
    """An H.264 clip of the astronaut's face (320x240), drifting a pixel a frame."""
    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for i in range(frames):
            image = np.ascontiguousarray(bgr[10 + i : 250 + i, 64 + i : 384 + i])
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])


def test_live_with_a_deepfacelab_dfm_records_a_swapped_video(tmp_path: Path) -> None:
    """``live --model F.dfm`` on a face clip: DF on ort-cpu, and AMP on torch with DeepFaceLive's mask rule."""
    frames = 8
    clip = write_face_clip(tmp_path / "face.mp4", frames)
    common = ["--source", str(clip), "--frames", str(frames)]
    plain = tmp_path / "plain.mp4"
    run = run_cli(*common, "--no-swap", "--record", str(plain))
    assert run.returncode == 0, run.stderr
    source = decoded(plain).astype(np.float32)
    assert source.shape == (frames, 240, 320, 3)
    runs = {
        "df_64": ["--backend", "ort-cpu"],
        "amp_64": ["--backend", "torch", "--mask", "both", "--morph", "0.5"],
    }
    for name, options in runs.items():
        swapped, metrics = tmp_path / f"{name}.mp4", tmp_path / f"{name}.json"
        model = str(FIXTURES / f"{name}.dfm")
        run = run_cli(*common, *options, "--model", model, "--record", str(swapped), "--metrics-json", str(metrics))
        assert run.returncode == 0, run.stderr
        assert json.loads(metrics.read_text())["frames_processed"] == frames
        result = decoded(swapped).astype(np.float32)
        assert result.shape == source.shape
        diff = np.abs(result - source).mean(axis=(0, 3))  # (240, 320): where the swap painted
        face = diff[60:180, 100:220]  # the astronaut's face sits about (160, 110) in every frame
        assert face.mean() > 5.0, f"{name}: the face region barely changed ({face.mean():.1f} levels)"
        edges = diff[:, :40].mean(), diff[:, -40:].mean()
        assert max(edges) < 3.0, f"{name}: the frame edges changed {edges}"  # the source's, up to coding noise


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
def test_mask_rules(loaded: dict[tuple[str, Backend], SwapModel], backend: Backend) -> None:
    """Each ``FaceMask`` is the product of the model outputs it names (DeepFaceLive's rule: both)."""
    model = get(loaded, "liae_udt_64", backend)
    ref = reference("liae_udt_64")
    frame_mask, celeb_face, celeb_mask = (a[..., 0] if a.shape[-1] == 1 else a for a in expected(ref, None))
    want = {
        FaceMask.CELEB: celeb_mask,
        FaceMask.FRAME: frame_mask,
        FaceMask.BOTH: frame_mask * celeb_mask,
        FaceMask.MESH: np.ones_like(celeb_mask),
        FaceMask.DFL: frame_mask * celeb_mask,
    }
    assert set(want) == set(FaceMask)
    for rule, mask in want.items():
        faces, masks = model.swap(ref["in_face"], mask=rule)
        np.testing.assert_allclose(faces, celeb_face, atol=TOL)
        np.testing.assert_allclose(masks, mask, atol=TOL, err_msg=rule.value)
    np.testing.assert_array_equal(model.swap(ref["in_face"])[1], model.swap(ref["in_face"], mask=FaceMask.CELEB)[1])


def test_mask_option_reaches_the_swap_stages() -> None:
    from realtime_swap.cli import _config_from_args, build_parser
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.gpu import GpuSwapComposeStage
    from realtime_swap.pipeline import build_pipeline
    from realtime_swap.swap.stage import SwapStage

    parser, _ = build_parser()
    for rule in FaceMask:  # the CLI's choices are the enum's values
        assert _config_from_args(parser.parse_args(["live", "--mask", rule.value])).faces.mask is rule
    assert _config_from_args(parser.parse_args(["live"])).faces.mask is FaceMask.CELEB
    with pytest.raises(SystemExit):
        parser.parse_args(["live", "--mask", "src"])
    for extra, stage_type in (([], SwapStage), (["--gpu-path", "cpu"], GpuSwapComposeStage)):
        args = ["live", "--model", str(FIXTURES / "amp_64.dfm"), "--null", "--mask", "both", *extra]
        cfg = _config_from_args(parser.parse_args(args))
        assert cfg.faces.mask is FaceMask.BOTH
        pipeline, _ = build_pipeline(cfg)
        stage = pipeline.stages[1]
        assert isinstance(stage, stage_type) and stage.mask is FaceMask.BOTH
        pipeline.source.close()
        stage.close()
    for rule in FaceMask:  # the landmark hull bounds every rule's paste but dfl's
        args = ["live", "--model", str(FIXTURES / "amp_64.dfm"), "--null", "--mask", rule.value]
        pipeline, _ = build_pipeline(_config_from_args(parser.parse_args(args)))
        detect = pipeline.stages[0]
        assert isinstance(detect, DetectStage) and detect.mask is (rule is not FaceMask.DFL), rule.value
        pipeline.source.close()
        for stage in pipeline.stages:
            stage.close()


def test_swap_stage_hands_on_the_chosen_mask() -> None:
    from test_swap_stage import aligned_face, make_frame

    from realtime_swap.stages import Controls
    from realtime_swap.swap.stage import SwapStage

    model = SwapModel.load(FIXTURES / "liae_32.dfm", Backend.ORT_CPU)
    crop = aligned_face(0, 32).aligned
    assert crop is not None
    x = crop.image[None].astype(np.float32) / 255.0
    frame_mask, _, celeb_mask = model.runner.run({DFM_INPUT: x}, list(OUTPUTS))
    for rule, want in ((FaceMask.BOTH, frame_mask * celeb_mask), (FaceMask.FRAME, frame_mask)):
        frame = SwapStage(model, mask=rule).process(make_frame([aligned_face(0, 32)]), Controls())
        result = frame.faces[0].swapped
        assert result is not None
        np.testing.assert_allclose(result.mask, want[0, ..., 0], atol=1e-5)
    model.close()


def test_mask_rules_on_the_device_path(loaded: dict[tuple[str, Backend], SwapModel]) -> None:
    """The torch-device path (CUDA tensors in, out) binds one buffer per mask output; its arithmetic, run here on
    the CPU torch backend, matches the host path's."""
    import torch

    model = get(loaded, "liae_udt_64", Backend.TORCH)
    x = reference("liae_udt_64")["in_face"]
    for rule in FaceMask:
        faces, masks = model._swap_device_torch(torch.from_numpy(x), {}, rule)
        want_faces, want_masks = model.swap(x, mask=rule)
        np.testing.assert_allclose(faces.numpy(), want_faces, atol=1e-6)
        np.testing.assert_allclose(masks.numpy(), want_masks, atol=1e-6, err_msg=rule.value)


@pytest.mark.parametrize(("backend", "detectors"), [("torch", Backend.AUTO), ("ort-cpu", Backend.ORT_CPU)])
def test_a_swap_backend_outside_onnx_runtime_leaves_the_detectors_on_auto(backend: str, detectors: Backend) -> None:
    """``live --backend torch`` once failed in the detect stage: the detectors (ONNX Runtime models) were handed
    the swap model's backend."""
    from realtime_swap.cli import _config_from_args, build_parser
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.pipeline import build_pipeline

    parser, _ = build_parser()
    argv = ["live", "--model", str(FIXTURES / "df_64.dfm"), "--backend", backend, "--null"]
    cfg = _config_from_args(parser.parse_args(argv))
    pipeline, _ = build_pipeline(cfg)
    detect, swap = pipeline.stages[:2]
    assert isinstance(detect, DetectStage) and detect.tracker.options.engine.backend is detectors
    assert swap.model.backend is Backend(backend)  # type: ignore[attr-defined]
    pipeline.source.close()
    swap.close()


def _opset12_graph() -> bytes:
    """tf2onnx's opset-12 forms that the fixtures do not reach: Pad with pads/value inputs, Split with a ``split``
    attribute, Squeeze/Unsqueeze with ``axes`` attributes, Resize (nearest asymmetric/floor by scales, as
    tf.image.resize_nearest_neighbor; linear half_pixel by sizes, as resize_bilinear with half_pixel_centers),
    ReduceMean with ``axes``, a Transpose chain and Identity outputs. In (N,8,8,3), out (N,20,20,1) and (N,12,12,3).
    """
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
        numpy_helper.from_array(np.array(0.5, np.float32), "pad_value"),
        numpy_helper.from_array(np.array([], np.float32), "roi"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array([1, 3, 12, 12], np.int64), "sizes"),
    ]
    nodes = [
        helper.make_node("Transpose", ["in_face:0"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["nchw", "pads", "pad_value"], ["padded"], mode="constant"),
        helper.make_node("Split", ["padded"], ["a", "b"], axis=1, split=[1, 2]),
        helper.make_node("Squeeze", ["a"], ["a2"], axes=[1]),
        helper.make_node("Unsqueeze", ["a2"], ["a3"], axes=[1]),
        helper.make_node("Concat", ["b", "a3"], ["joined"], axis=1),
        helper.make_node(
            "Resize", ["joined", "roi", "scales"], ["up"], mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor",
        ),
        helper.make_node("ReduceMean", ["up"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Transpose", ["mean"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["t2"], ["t3"], perm=[0, 2, 1, 3]),
        helper.make_node("Identity", ["t3"], ["out_a"]),
        helper.make_node(
            "Resize", ["joined", "roi", "roi", "sizes"], ["lin"], mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Transpose", ["lin"], ["out_b"], perm=[0, 2, 3, 1]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tf2onnx_opset12_forms",
        [helper.make_tensor_value_info("in_face:0", TensorProto.FLOAT, ["unk__1", 8, 8, 3])],
        [
            helper.make_tensor_value_info("out_a", TensorProto.FLOAT, ["unk__2", 20, 20, 1]),
            helper.make_tensor_value_info("out_b", TensorProto.FLOAT, ["unk__3", 12, 12, 3]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="tf2onnx")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_torch_converter_reads_tf2onnx_opset12_forms() -> None:
    import torch

    from realtime_swap.infer.onnx_torch import OnnxModule

    data = _opset12_graph()
    x = np.random.default_rng(0).random((1, 8, 8, 3), np.float32)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"in_face:0": x})
    with torch.inference_mode():
        got = OnnxModule(onnx.load_from_string(data), "opset12").eval()(torch.from_numpy(x))
    for g, w in zip(got, want, strict=True):
        assert tuple(g.shape) == w.shape
        np.testing.assert_allclose(g.numpy(), w, atol=1e-5)
