"""The shared swap executor: several streams' faces in one model call, each stream's frames in order, a lone
request never waits for a full batch, and the same pixels as each stream calling the model itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_swap_stage import CountingRunner, aligned_face, make_frame

from realtime_swap.config import EngineConfig, FaceSpec
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import build_stream_pipeline
from realtime_swap.sinks.base import Sink
from realtime_swap.sources.base import Source
from realtime_swap.stages import Controls
from realtime_swap.swap import SwapModel, SwapStage
from realtime_swap.swap.executor import BatchingSwapExecutor
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import Frame, StreamInfo

RES = 32


@pytest.fixture(scope="module")
def dfm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("x") / "tiny.dfm"
    path.write_bytes(build_dfm_model(RES, width=8, ae_dims=32))
    return path


def counted_model(path: Path) -> tuple[SwapModel, CountingRunner]:
    model = SwapModel.load(path, Backend.ORT_CPU)
    runner = CountingRunner(model.runner)
    model.runner = runner  # type: ignore[assignment]
    return model, runner


def crops(seed: int, n: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, RES, RES, 3), dtype=np.float32)


def run_streams(executor: BatchingSwapExecutor, runner: CountingRunner, inputs: list[np.ndarray]) -> dict[int, object]:
    """Each input from its own thread after a first round that makes every stream known to the executor as
    active (with a full batch each, so nobody waits in it); the calls of the second round alone stay in
    ``runner.calls``; returns the second round's results."""
    results: dict[int, object] = {}
    start = threading.Barrier(len(inputs))
    measured = threading.Barrier(len(inputs), action=runner.calls.clear)

    def stream(i: int) -> None:
        start.wait()
        executor.swap(0, crops(100 + i, n=executor.max_batch), None)
        measured.wait()
        results[i] = executor.swap(0, inputs[i], None)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_requests_within_the_window_share_one_call_and_get_their_own_rows(dfm_path: Path) -> None:
    model, runner = counted_model(dfm_path)
    reference = SwapModel.load(dfm_path, Backend.ORT_CPU)
    executor = BatchingSwapExecutor([model], window_ms=20_000.0, max_batch=8, active_s=60.0)
    inputs = [crops(i, n=1 + i % 2) for i in range(3)]  # 1 + 2 + 1 faces
    t0 = time.perf_counter()
    results = run_streams(executor, runner, inputs)
    waited = time.perf_counter() - t0
    executor.close()
    assert runner.calls == [4]  # one model call for the three streams
    assert waited < 10.0  # it started once all three active streams were in, not at the end of the 20 s window
    for i, x in enumerate(inputs):
        faces, masks = reference.swap(x)
        got = results[i]
        assert isinstance(got, tuple)
        np.testing.assert_allclose(got[0], faces, atol=1e-5)
        np.testing.assert_allclose(got[1], masks, atol=1e-5)
    reference.close()


def test_a_lone_stream_never_waits_for_the_window(dfm_path: Path) -> None:
    model, runner = counted_model(dfm_path)
    executor = BatchingSwapExecutor([model], window_ms=20_000.0, max_batch=64)
    done = threading.Event()
    threading.Thread(target=lambda: (executor.swap(0, crops(0), None), done.set()), daemon=True).start()
    assert done.wait(10.0)
    executor.close()
    assert runner.calls == [1]


def test_a_full_batch_starts_at_once_and_the_rest_waits_for_the_next_call(dfm_path: Path) -> None:
    model, runner = counted_model(dfm_path)
    executor = BatchingSwapExecutor([model], window_ms=2_000.0, max_batch=2, active_s=60.0)
    results = run_streams(executor, runner, [crops(i) for i in range(3)])
    executor.close()
    assert sorted(runner.calls) == [1, 2] and len(results) == 3


def test_model_errors_reach_each_caller_and_close_refuses_new_work(dfm_path: Path) -> None:
    executor = BatchingSwapExecutor([SwapModel.load(dfm_path, Backend.ORT_CPU)], window_ms=0.0)
    wrong = np.zeros((1, 8, RES, 3), np.float32)  # the model's own check raises ValueError in the worker
    with pytest.raises(ValueError, match="expected crops"):
        executor.swap(0, wrong, None)
    executor.close()
    with pytest.raises(RuntimeError, match="closed"):
        executor.swap(0, crops(0), None)


def test_swap_stages_on_a_shared_executor_give_the_same_pixels_as_their_own_model(dfm_path: Path) -> None:
    executor = BatchingSwapExecutor([SwapModel.load(dfm_path, Backend.ORT_CPU)], window_ms=20.0, max_batch=8)
    own = SwapStage(SwapModel.load(dfm_path, Backend.ORT_CPU))
    shared = [SwapStage(executor.stage_models()) for _ in range(2)]
    got: dict[int, list[np.ndarray]] = {}

    def run(i: int) -> None:
        frame = shared[i].process(make_frame([aligned_face(i), aligned_face(i + 2)]), Controls())
        got[i] = [f.swapped.face for f in frame.faces if f.swapped is not None]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for stage in shared:
        stage.close()  # the shared models stay open for the other streams
    assert executor.swap(0, crops(0), None)[0].shape == (1, RES, RES, 3)
    for i in range(2):
        expected = own.process(make_frame([aligned_face(i), aligned_face(i + 2)]), Controls())
        assert len(got[i]) == 2
        for a, b in zip(got[i], expected.faces, strict=True):
            assert b.swapped is not None
            np.testing.assert_allclose(a, b.swapped.face, atol=1e-5)
    own.close()
    executor.close()
    assert executor.calls >= 1 and executor.faces >= 4


class _CodedSource(Source):
    """A live source of ``count`` astronaut frames; the frame's number is in its pts."""

    def __init__(self, count: int) -> None:
        self.info = StreamInfo(512, 512, 30.0, True, "coded")
        self.count = count
        self.sent = 0
        self.image = make_frame([]).image

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.sent >= self.count:
            return None
        self.sent += 1
        time.sleep(0.01)
        return self.image, float(self.sent)


class _Collect(Sink):
    name = "collect"

    def __init__(self) -> None:
        self.pts: list[float] = []
        self.swapped = 0

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, frame: Frame) -> None:
        self.pts.append(frame.pts)
        self.swapped += any(f.swapped is not None for f in frame.faces)


@pytest.mark.slow
def test_two_stream_pipelines_on_one_executor_keep_their_frames_in_order() -> None:
    from realtime_swap.pipeline import load_swap_models

    faces = FaceSpec(backend=Backend.ORT_CPU, detect_every=1)
    executor = BatchingSwapExecutor(load_swap_models(faces), window_ms=3.0, max_batch=8)
    sinks = [_Collect(), _Collect()]
    pipelines = [
        build_stream_pipeline(EngineConfig(faces=faces), _CodedSource(25), [sink], executor)[0] for sink in sinks
    ]
    threads = [threading.Thread(target=p.run) for p in pipelines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    executor.close()
    for sink in sinks:
        assert sink.pts and sink.pts == sorted(sink.pts)
        assert sink.swapped > 0
    assert executor.requests >= sum(s.swapped for s in sinks)


def test_the_mask_rule_travels_with_the_request(dfm_path: Path) -> None:
    from realtime_swap.swap.model import FaceMask

    reference = SwapModel.load(dfm_path, Backend.ORT_CPU)
    executor = BatchingSwapExecutor([SwapModel.load(dfm_path, Backend.ORT_CPU)], window_ms=0.0)
    try:
        x = crops(7)
        for rule in (FaceMask.CELEB, FaceMask.FRAME, FaceMask.BOTH):
            _, want = reference.swap(x, mask=rule)
            _, got = executor.stage_models()[0].swap(x, mask=rule)
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=rule.value)
        assert not np.allclose(reference.swap(x, mask=FaceMask.CELEB)[1], reference.swap(x, mask=FaceMask.FRAME)[1])
    finally:
        executor.close()
        reference.close()
