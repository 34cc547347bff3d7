"""The threaded pipeline: order, newest-frame-wins drops, bounded queues, errors, stop protocol."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decode_index

from realtime_swap.errors import StageError
from realtime_swap.pipeline import DropPolicy, Pipeline
from realtime_swap.sinks.base import Sink
from realtime_swap.sinks.null import NullSink
from realtime_swap.sinks.video_file import VideoFileSink
from realtime_swap.sources.av_source import AVSource
from realtime_swap.sources.demo import DemoSource
from realtime_swap.sources.images import ImageSource
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Frame, StreamInfo


class CollectSink(Sink):
    """Keeps what it is given (index, decoded code, capture time)."""

    name = "collect"

    def __init__(self, decode: bool = False) -> None:
        self.indices: list[int] = []
        self.codes: list[int] = []
        self.decode = decode
        self.closed = False

    def open(self, info: StreamInfo) -> None:
        self.info = info

    def write(self, frame: Frame) -> None:
        self.indices.append(frame.index)
        if self.decode:
            self.codes.append(decode_index(frame.image))

    def close(self) -> None:
        self.closed = True


class SleepStage(Stage):
    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds

    def process(self, frame: Frame, controls: Controls) -> Frame:
        time.sleep(self.seconds)
        return frame


class FailingStage(Stage):
    name = "boom"

    def __init__(self, at: int) -> None:
        self.at = at

    def process(self, frame: Frame, controls: Controls) -> Frame:
        if frame.index == self.at:
            raise ValueError("bad pixel")
        return frame


def test_file_source_frames_leave_in_order_and_none_is_lost(test_video: Path) -> None:
    sink = CollectSink(decode=True)
    stages = [SleepStage("a", 0.001), SleepStage("b", 0.0)]
    pipeline = Pipeline(AVSource(test_video), stages, [sink])
    report = pipeline.run()
    assert pipeline.drop_policy is DropPolicy.BLOCK
    assert sink.codes == list(range(60))  # decoded content, in order, every frame
    assert sink.indices == list(range(60))
    assert report.frames_captured == report.frames_processed == 60
    assert report.frames_dropped == 0
    assert set(report.stages) >= {"capture", "a", "b", "output", "sink:collect"}
    assert sink.closed


def test_image_folder_is_a_looping_stream(tmp_path: Path) -> None:
    import cv2
    from conftest import encode_index

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), encode_index(i))
    sink = CollectSink(decode=True)
    Pipeline(ImageSource(tmp_path, realtime=False), [], [sink], max_frames=7).run()
    assert sink.codes == [0, 1, 2, 0, 1, 2, 0]


def test_slow_stage_drops_at_capture_with_bounded_queues_and_flat_memory() -> None:
    # a 200 fps paced camera feeding a 25 fps stage: the engine must drop, not queue
    source = DemoSource(640, 480, fps=200, realtime=True)
    sink = CollectSink()
    pipeline = Pipeline(source, [SleepStage("slow", 0.04)], [sink], queue_size=2, duration_s=2.0)
    tracemalloc.start()
    report = pipeline.run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert pipeline.drop_policy is DropPolicy.LATEST
    assert report.frames_dropped > report.frames_processed  # most frames were dropped at capture...
    assert report.frames_captured == report.frames_processed + report.frames_dropped  # ...and only there
    assert all(depth <= 2 for depth in report.queue_max_depth.values())
    assert sink.indices == sorted(sink.indices)  # order kept
    frame_bytes = 640 * 480 * 3
    # captured ~400 frames (350 MB if queued); alive at once: slot + stage + queues + sink + demo scratch
    assert report.frames_captured > 200
    assert peak < 20 * frame_bytes


@pytest.mark.parametrize("where", ["capture", "stage", "sink"])
def test_a_worker_exception_reaches_the_caller_with_the_stage_name(where: str, test_video: Path) -> None:
    source = AVSource(test_video)
    stages: list[Stage] = [SleepStage("a", 0.0)]
    sinks: list[Sink] = [CollectSink()]
    if where == "capture":

        def broken_read() -> None:
            raise OSError("device unplugged")

        source.read = broken_read  # type: ignore[method-assign,assignment]
        expected = "stage 'capture' failed: OSError: device unplugged"
    elif where == "stage":
        stages.append(FailingStage(at=5))
        expected = "stage 'boom' failed: ValueError: bad pixel"
    else:

        class BrokenSink(CollectSink):
            name = "broken"

            def write(self, frame: Frame) -> None:
                raise RuntimeError("disk full")

        sinks = [BrokenSink()]
        expected = "stage 'output:broken' failed: RuntimeError: disk full"
    with pytest.raises(StageError) as info:
        Pipeline(source, stages, sinks).run()
    assert str(info.value) == expected
    assert all(getattr(s, "closed", True) for s in sinks)  # outputs closed even on error


def test_stop_mid_run_leaves_a_playable_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec.mp4"
    recorder = VideoFileSink(out, preset="ultrafast")
    pipeline = Pipeline(DemoSource(320, 240, fps=30, realtime=True), [SleepStage("work", 0.005)], [recorder])
    threading.Timer(1.5, pipeline.stop).start()
    report = pipeline.run()
    assert report.stopped_by == "stop"
    assert recorder.frames_written == report.frames_processed > 20
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded) == recorder.frames_written
    assert decoded[0].shape == (240, 320, 3)


def test_recording_keeps_source_timestamps(tmp_path: Path, test_video: Path) -> None:
    out = tmp_path / "copy.mkv"
    Pipeline(AVSource(test_video), [], [VideoFileSink(out, preset="ultrafast")]).run()
    with av.open(str(out)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert len(times) == 60
    assert np.allclose(np.diff(times), 1 / 30, atol=1e-3)


def test_null_sink_counts_every_frame() -> None:
    sink = NullSink()
    report = Pipeline(DemoSource(160, 120, realtime=False), [], [sink], max_frames=25).run()
    assert sink.frames == report.frames_processed == 25
