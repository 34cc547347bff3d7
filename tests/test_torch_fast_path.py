"""The torch CUDA path's pieces that run on the CPU too: channels_last weights, one static-buffer graph per batch
size (capture replaced by a CPU stand-in; real CUDA graphs are the ``gpu`` tests' and the GPU suite's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from realtime_swap.errors import ConfigError  # noqa: E402
from realtime_swap.infer.runner import Precision  # noqa: E402
from realtime_swap.infer.session import Backend  # noqa: E402
from realtime_swap.infer.torch_runtime import StaticGraphs, TorchRunner  # noqa: E402
from realtime_swap.swap import BackendOptions, SwapModel  # noqa: E402
from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_MORPH  # noqa: E402
from realtime_swap.swap.synthetic import build_dfm_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def morph_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast") / "morph.dfm"
    path.write_bytes(build_dfm_model(32, width=8, ae_dims=32, morph=True))
    return path


def _crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 32, 32, 3), np.float32)


class CpuCapture:
    """Stands in for CUDA graph capture: the 'graph' reruns fn on the static inputs into the static outputs."""

    def __init__(self) -> None:
        self.captures = 0

    def __call__(self, fn: Any, statics: list[Any]) -> tuple[Any, tuple[Any, ...]]:
        self.captures += 1
        with torch.inference_mode():
            outputs = tuple(o.clone() for o in fn(*statics))

        def replay() -> None:
            with torch.inference_mode():
                for out, new in zip(outputs, fn(*statics), strict=True):
                    out.copy_(new)

        return replay, outputs


def test_one_graph_per_batch_size_and_host_value_with_static_buffers(morph_path: Path) -> None:
    runner = TorchRunner(morph_path, precision=Precision.FP32)
    capture = CpuCapture()
    graphs = StaticGraphs(runner._fn, capture)
    from realtime_swap.infer.onnx_torch import host_scalar

    def eager(x: np.ndarray, morph: float) -> tuple[Any, ...]:
        with torch.inference_mode():
            return tuple(runner._fn(torch.from_numpy(x), host_scalar(morph)))

    first = graphs(torch.from_numpy(_crops(1, 0)), host_scalar(0.5))
    storage = [o.data_ptr() for o in first]
    second = graphs(torch.from_numpy(_crops(1, 1)), host_scalar(0.5))
    assert len(graphs) == 1 and capture.captures == 1
    assert [o.data_ptr() for o in second] == storage  # replayed into the same static outputs
    for got, want in zip(second, eager(_crops(1, 1), 0.5), strict=True):
        torch.testing.assert_close(got, want)
    graphs(torch.from_numpy(_crops(4, 2)), host_scalar(0.5))
    graphs(torch.from_numpy(_crops(1, 3)), host_scalar(0.25))  # another morph factor sizes another slice
    assert len(graphs) == 3 and capture.captures == 3


def test_channels_last_weights_compute_what_contiguous_ones_do(morph_path: Path) -> None:
    plain = TorchRunner(morph_path, precision=Precision.FP32, channels_last=False)
    nhwc = TorchRunner(morph_path, precision=Precision.FP32, channels_last=True)
    assert not plain.channels_last  # the CPU default: no layout change where cuDNN is not the consumer
    weights = [b for b in nhwc._fn.buffers() if b.dim() == 4]  # the converted graph keeps weights as buffers
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    feeds = {DFM_INPUT: _crops(3, 0), DFM_MORPH: np.array([0.6], np.float32)}
    names = [o.name for o in plain.outputs]
    for a, b in zip(plain.run(feeds, names), nhwc.run(feeds, names), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_cuda_graphs_on_the_cpu_are_refused_and_reach_the_torch_backend(morph_path: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        TorchRunner(morph_path, cuda_graph=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
            SwapModel.load(morph_path, Backend.TORCH, options=BackendOptions(cuda_graph=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16, Precision.BF16])
def test_cuda_graph_replays_match_eager_on_cuda(morph_path: Path, precision: Precision) -> None:
    reference = SwapModel.load(morph_path, Backend.ORT_CPU)
    model = SwapModel.load(morph_path, Backend.TORCH, options=BackendOptions(cuda_graph=True, precision=precision))
    atol = {Precision.FP32: 1e-2, Precision.FP16: 2e-2, Precision.BF16: 6e-2}[precision]  # TF32 convs in fp32
    for n in (1, 4, 1, 4):
        crops = _crops(n, n)
        want_faces, want_masks = reference.swap(crops, morph=0.6)
        faces, masks = model.swap(torch.from_numpy(crops).cuda(), morph=0.6)
        np.testing.assert_allclose(faces.cpu().numpy(), want_faces, atol=atol)
        np.testing.assert_allclose(masks.cpu().numpy(), want_masks, atol=atol)
    graphs = model.runner.graphs  # type: ignore[attr-defined]
    assert graphs is not None and len(graphs) == 2


def test_host_staging_reuses_its_buffers_per_frame_shape_and_never_writes_the_frame() -> None:
    from realtime_swap.gpu.ops import HostStaging

    allocated: list[tuple[int, ...]] = []

    def plain(shape: tuple[int, ...], dtype: Any, pin: bool) -> Any:  # what pinning would allocate, unpinned
        assert pin
        allocated.append(shape)
        return torch.empty(shape, dtype=dtype)

    staging = HostStaging(torch.device("cpu"), pin=True, alloc=plain)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(3)] + [np.zeros((20, 30, 3), np.uint8)]
    for image in frames:
        before = image.copy()
        device = staging.upload(image)
        device[0, 0] = 7  # the stage composites in place on the device copy
        out = staging.download(device)
        np.testing.assert_array_equal(image, before)
        assert out[0, 0, 0] == 7 and np.array_equal(out[1:], image[1:]) and not np.shares_memory(out, image)
    # per shape: the upload ring's buffers as they are first needed (two, the third frame reuses the first) + one down
    assert allocated == [(48, 64, 3)] * 3 + [(20, 30, 3)] * 2
    assert not HostStaging(torch.device("cpu")).pin  # pinned memory on CUDA only


def test_compile_without_a_cxx_compiler_runs_eager_and_says_why(
    morph_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A machine without a working C compiler (or Triton, on CUDA) cannot build inductor's kernels: the first call
    must not fail the stream; the model runs uncompiled and the reason is logged and kept on the runner."""
    import torch._inductor.config as inductor_config

    # torch's own override: monkeypatch on the config proxy fails once another test has patched it there
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
        torch._dynamo.reset()
        runner = TorchRunner(morph_path, precision=Precision.FP32, compile=True)
        plain = TorchRunner(morph_path, precision=Precision.FP32)
        feeds = {DFM_INPUT: _crops(2, 3), DFM_MORPH: np.array([0.5], np.float32)}
        names = [o.name for o in runner.outputs]
        assert runner.compile_error is None  # not tried before the first call
        with caplog.at_level("WARNING", logger="realtime_swap.infer.torch_runtime"):
            got = runner.run(feeds, names)
        torch._dynamo.reset()
    assert runner.compile_error is not None and "C++ compiler" in runner.compile_error
    assert "torch.compile failed" in caplog.text and "running the model uncompiled" in caplog.text
    for a, b in zip(got, plain.run(feeds, names), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert plain.compile_error is None
    runner.run(feeds, names)  # later calls go straight to eager
    assert caplog.text.count("torch.compile failed") == 1


def test_cuda_graph_capture_warms_up_on_a_side_stream_and_captures_thread_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch's recipe, checked with stand-ins for torch.cuda: warm-up calls on a side stream that waited for the
    current one, the current stream waits for them, then one capture that other threads cannot invalidate."""
    import contextlib

    from realtime_swap.infer.torch_runtime import cuda_graph_capture

    events: list[str] = []
    streams = {"current": "default"}

    class Stream:
        def __init__(self, name: str = "side") -> None:
            self.name = name

        def wait_stream(self, other: Stream) -> None:
            events.append(f"{self.name} waits {other.name}")

    default = Stream("default")

    @contextlib.contextmanager
    def on_stream(stream: Stream) -> Iterator[None]:
        before, streams["current"] = streams["current"], stream.name
        yield
        streams["current"] = before

    class Graph:
        def replay(self) -> None:
            events.append("replay")

    @contextlib.contextmanager
    def graph(g: Graph, **kw: Any) -> Iterator[None]:
        events.append(f"capture {kw}")
        before, streams["current"] = streams["current"], "capture"
        yield
        streams["current"] = before

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: default)
    monkeypatch.setattr(torch.cuda, "stream", on_stream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", graph)

    def fn(x: Any) -> tuple[Any, ...]:
        events.append(f"run on {streams['current']}")
        return (x * 2,)

    replay, outputs = cuda_graph_capture(fn, [torch.ones(2)])
    assert events == [
        "side waits default", "run on side", "run on side", "run on side", "default waits side",
        "capture {'capture_error_mode': 'thread_local'}", "run on capture",
    ]  # fmt: skip
    assert torch.equal(outputs[0], torch.full((2,), 2.0))
    replay()
    assert events[-1] == "replay"
