"""Live-grade behaviour: corrupt packets skipped, sources reconnected, nothing in flight lost, bounded latency
at capacity, metrics in constant memory."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decode_index, encode_index, free_port, run_cli, write_test_video

from realtime_swap.errors import SourceError, StageError
from realtime_swap.handoff import DropPolicy
from realtime_swap.metrics import Histogram, Metrics
from realtime_swap.pipeline import Pipeline
from realtime_swap.sinks.base import Sink
from realtime_swap.sinks.video_file import VideoFileSink
from realtime_swap.sources import SourceSpec, open_source
from realtime_swap.sources.av_source import AVSource
from realtime_swap.sources.base import Source, SourceOutage
from realtime_swap.sources.demo import DemoSource
from realtime_swap.sources.reconnect import ReconnectingSource
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Frame, StreamInfo

SERVER = Path(__file__).with_name("stream_server.py")


class Collect(Sink):
    """Keeps each written frame's code, held flag and write time."""

    name = "collect"

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.held: list[bool] = []
        self.times: list[float] = []

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, frame: Frame) -> None:
        self.codes.append(decode_index(frame.image))
        self.held.append(frame.held)
        self.times.append(time.perf_counter())


class Sleep(Stage):
    """Sleeps; records, for each frame it takes, how many newer frames capture had delivered by then."""

    def __init__(self, name: str, seconds: float, metrics: Metrics | None = None) -> None:
        self.name = name
        self.seconds = seconds
        self.metrics = metrics
        self.staleness: list[int] = []

    def process(self, frame: Frame, controls: Controls) -> Frame:
        if self.metrics is not None:
            self.staleness.append(self.metrics.captured - 1 - frame.index)
        time.sleep(self.seconds)
        return frame


class Boom(Stage):
    name = "boom"

    def __init__(self, at: int) -> None:
        self.at = at

    def process(self, frame: Frame, controls: Controls) -> Frame:
        if frame.index >= self.at:
            raise ValueError("bad pixel")
        frame.image = frame.image.copy()
        frame.image[-8:] = 0  # a mark of this stage's work, below the code
        return frame


def corrupt_middle(src: Path, dst: Path) -> Path:
    """``src`` with 300 bytes in the middle of its (H.264) payload overwritten."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * 0.4)
    data[start : start + 300] = bytes(300)
    dst.write_bytes(bytes(data))
    return dst


def reference_decode(path: Path) -> tuple[list[float], int]:
    """What PyAV decodes from ``path`` when the packets it rejects are skipped: frame times, bad packets."""
    times, bad = [], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                times += [float(f.time) for f in packet.decode()]
            except av.error.InvalidDataError:
                bad += 1
    return times, bad


# -- decode errors ---------------------------------------------------------------------------------------------


def test_corrupt_middle_file_records_every_decodable_frame_in_order(tmp_path: Path) -> None:
    bad = corrupt_middle(write_test_video(tmp_path / "ok.mp4", frames=120), tmp_path / "bad.mp4")
    expected, bad_packets = reference_decode(bad)
    assert bad_packets > 0 and 100 < len(expected) < 120  # the fixture really is damaged
    out = tmp_path / "rec.mkv"
    report = Pipeline(AVSource(bad), [], [VideoFileSink(out, preset="ultrafast")]).run()
    assert report.frames_corrupt == bad_packets
    assert report.frames_processed == len(expected)
    with av.open(str(out)) as container:
        recorded = [float(f.time) for f in container.decode(video=0)]
    assert len(recorded) == len(expected)
    assert np.allclose(recorded, np.array(expected) - expected[0], atol=1e-3)  # in order, source timestamps


def test_corrupt_file_through_the_cli_reports_frames_corrupt(tmp_path: Path) -> None:
    bad = corrupt_middle(write_test_video(tmp_path / "ok.mp4", frames=120), tmp_path / "bad.mp4")
    metrics = tmp_path / "m.json"
    result = run_cli("--source", str(bad), "--no-swap", "--null", "--metrics-json", str(metrics), "-q")
    assert result.returncode == 0, result.stderr
    import json

    doc = json.loads(metrics.read_text())
    assert doc["frames_corrupt"] > 0
    assert doc["frames_processed"] == len(reference_decode(bad)[0])
    assert "corrupt packets skipped" in result.stderr


def test_a_file_with_nothing_decodable_fails_with_one_line(tmp_path: Path) -> None:
    good = write_test_video(tmp_path / "ok.mp4", frames=30)
    data = bytearray(good.read_bytes())
    mdat = data.index(b"mdat") + 4
    moov = data.index(b"moov") - 4
    data[mdat:moov] = bytes(moov - mdat)  # every payload byte gone, the header intact
    bad = tmp_path / "zeros.mp4"
    bad.write_bytes(bytes(data))
    result = run_cli("--source", str(bad), "--no-swap", "--null", "-q")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing decodable" in errors[0] and str(bad) in errors[0]


# -- nothing in flight is lost ---------------------------------------------------------------------------------


def test_a_stage_error_mid_run_still_records_every_captured_frame(tmp_path: Path, test_video: Path) -> None:
    out = tmp_path / "rec.mp4"
    recorder, collect = VideoFileSink(out, preset="ultrafast"), Collect()
    pipeline = Pipeline(AVSource(test_video), [Boom(at=20), Sleep("after", 0.0)], [recorder, collect])
    with pytest.raises(StageError, match="stage 'boom' failed: ValueError: bad pixel"):
        pipeline.run()
    captured = pipeline.metrics.captured  # the error stopped capture; what it had captured must all come out
    assert captured > 20
    assert collect.codes == list(range(captured))  # in order: 20 worked on, the rest as captured
    assert pipeline.metrics.unswapped == captured - 20
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == captured  # finalised and playable


def test_a_capture_error_keeps_the_frames_already_captured(tmp_path: Path, test_video: Path) -> None:
    source = AVSource(test_video)
    real_read = source.read
    calls = {"n": 0}

    def read_then_fail() -> tuple[np.ndarray, float] | None:
        calls["n"] += 1
        if calls["n"] > 25:
            raise OSError("device unplugged")
        return real_read()

    source.read = read_then_fail  # type: ignore[method-assign]
    collect = Collect()
    with pytest.raises(StageError, match="stage 'capture' failed: OSError: device unplugged"):
        Pipeline(source, [Sleep("slow", 0.01)], [collect]).run()
    assert collect.codes == list(range(25))


# -- bounded latency -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [DropPolicy.LATEST, DropPolicy.CAPTURE])
def test_no_stale_frame_enters_a_stage_at_capacity(policy: DropPolicy) -> None:
    # a 50 fps camera, a 60 ms bottleneck: the engine runs at ~16 fps and must drop, not queue
    source = DemoSource(160, 120, fps=50, realtime=True)
    pipeline = Pipeline(source, [], [Collect()], drop_policy=policy, queue_size=2, duration_s=2.5)
    first = Sleep("first", 0.002, pipeline.metrics)
    slow = Sleep("slow", 0.06, pipeline.metrics)
    pipeline.stages = [first, slow, Sleep("last", 0.002)]
    report = pipeline.run()
    assert report.frames_dropped > 0
    steady = slow.staleness[5:]
    assert max(first.staleness[5:]) <= 2  # frame intervals between the newest capture and the frame started on
    if policy is DropPolicy.LATEST:
        assert np.percentile(steady, 90) <= 2  # the bottleneck, too, starts on fresh frames (a busy box may
        # delay a thread now and then: the point is that nothing waits in a queue)
        # and only frames nobody had worked on were let go: a stage starts a frame when the next one can take it
        assert set(report.dropped_at) == {"capture"}
    else:  # the old FIFO queues after capture: frames wait behind each other before the bottleneck
        assert np.median(steady) >= 5


def test_status_names_the_bottleneck_at_capacity() -> None:
    source = DemoSource(160, 120, fps=100, realtime=True)
    seen: list[dict[str, float | str]] = []
    pipeline = Pipeline(source, [Sleep("quick", 0.001), Sleep("swap", 0.03)], [Collect()], duration_s=2.5)
    pipeline.run(on_status=seen.append, status_interval_s=0.5)
    assert seen and seen[-1]["bottleneck"] == "swap"


# -- metrics in constant memory --------------------------------------------------------------------------------


def test_metrics_memory_is_constant_in_the_number_of_frames() -> None:
    import tracemalloc

    metrics = Metrics()
    rng = np.random.default_rng(0)
    samples = rng.lognormal(2.5, 0.5, 100_000)
    tracemalloc.start()
    for i, ms in enumerate(samples):
        metrics.stage("detect", float(ms))
        metrics.output(time.perf_counter() - ms / 1000.0)
        if i == 9_999:
            held_10k, traced_10k = metrics.series_nbytes(), tracemalloc.get_traced_memory()[0]
    traced_100k = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert metrics.series_nbytes() == held_10k  # 90 000 more samples, not a byte more held...
    assert traced_100k - traced_10k < 64 * 1024  # ...nor allocated (a list per series would take ~6 MB)
    report = metrics.report()
    exact = np.percentile(samples, [50, 95, 99])
    got = [report.stages["detect"][k] for k in ("p50", "p95", "p99")]
    assert np.allclose(got, exact, rtol=0.015)
    assert report.stages["detect"]["count"] == 100_000
    assert report.stages["detect"]["max"] == pytest.approx(samples.max())


def test_histogram_quantiles_of_a_small_series() -> None:
    h = Histogram()
    for v in (1.0, 2.0, 3.0, 4.0, 100.0):
        h.add(v)
    s = h.summary()
    assert s["p50"] == pytest.approx(3.0, rel=0.01)
    assert s["max"] == 100.0 and s["p99"] == pytest.approx(100.0, rel=0.01)
    assert s["mean"] == pytest.approx(22.0)


# -- reconnecting ----------------------------------------------------------------------------------------------


class FlakySource(Source):
    """Index-coded frames at ``fps``, paced; fails after ``fail_after`` frames (None: never)."""

    def __init__(self, start: int, fail_after: int | None, fps: float = 50.0, scale: int = 1) -> None:
        self.info = StreamInfo(160 * scale, 120 * scale, fps, live=True, name="flaky")
        self.i, self.start, self.fail_after, self.fps, self.scale = 0, start, fail_after, fps, scale
        self.closed = False

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.fail_after is not None and self.i >= self.fail_after:
            raise SourceError("flaky: connection reset")
        time.sleep(1.0 / self.fps)
        self.i += 1
        image = np.kron(encode_index(self.start + self.i - 1), np.ones((self.scale, self.scale, 1), np.uint8))
        return image, self.i / self.fps  # each connection restarts its clock

    def close(self) -> None:
        self.closed = True


def test_reconnecting_source_holds_then_resumes_on_one_clock() -> None:
    attempts = {"n": 0}

    def reopen() -> Source:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise SourceError("flaky: connection refused")
        return FlakySource(100, None, scale=2)  # back in another mode

    source = ReconnectingSource(FlakySource(0, 20), reopen, stall_timeout_s=1.0, backoff_s=(0.1, 0.2))
    got: list[tuple[np.ndarray, float] | SourceOutage] = []
    deadline = time.perf_counter() + 10
    while sum(1 for g in got if not isinstance(g, SourceOutage) and decode_index(g[0]) >= 100) < 10:
        item = source.read()
        assert item is not None and time.perf_counter() < deadline
        got.append(item)
    source.close()
    frames = [g for g in got if not isinstance(g, SourceOutage)]
    assert {f[0].shape for f in frames} == {(120, 160, 3)}  # the outputs keep the size they were opened at
    codes = [decode_index(f[0]) for f in frames]
    outages = [g for g in got if isinstance(g, SourceOutage)]
    assert codes[:20] == list(range(20)) and codes[20:] == list(range(100, 100 + len(codes) - 20))
    assert any(o.reconnecting and "reconnecting (attempt" in o.notice for o in outages)
    pts = [g.pts if isinstance(g, SourceOutage) else g[1] for g in got]
    assert all(b > a for a, b in itertools.pairwise(pts))  # one continuous clock across the gap
    stats = source.stats()
    assert stats["reconnects"] == 1 and stats["outages"] == 1 and float(stats["down_s"]) > 0.2
    assert attempts["n"] == 3


def test_reconnect_timeout_gives_up_with_one_line() -> None:
    def reopen() -> Source:
        raise SourceError("flaky: connection refused")

    source = ReconnectingSource(FlakySource(0, 5), reopen, reconnect_timeout_s=0.8, backoff_s=(0.1, 0.2))
    collect = Collect()
    t0 = time.perf_counter()
    with pytest.raises(StageError, match=r"did not come back within 0\.8 s \(last error: flaky: connection refused"):
        Pipeline(source, [], [collect]).run()
    assert time.perf_counter() - t0 < 5
    assert [c for c, h in zip(collect.codes, collect.held, strict=True) if not h] == list(range(5))
    assert any(collect.held)  # the outputs kept running while it tried


def _sender(url: str, frames: int, start: int) -> subprocess.Popen[bytes]:
    fmt = "flv" if url.startswith("rtmp") else "mpegts"
    return subprocess.Popen(
        [sys.executable, str(SERVER), url, str(frames), fmt, "--fps", "30", "--start", str(start)],
        cwd=SERVER.parent,
    )


def _open_retrying(spec: SourceSpec, seconds: float = 10.0) -> Source:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return open_source(spec)
        except SourceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stop_and_come_back(send_url: str, read_url: str, gap_s: float, tmp_path: Path) -> None:
    """Send 75 frames, pause ``gap_s``, send 90 more (codes 100…): the engine must carry both halves and
    keep its outputs running through the gap."""
    first = _sender(send_url, 75, start=0)
    second: subprocess.Popen[bytes] | None = None
    try:
        source = _open_retrying(SourceSpec(read_url, stall_timeout_s=1.5))
        assert isinstance(source, ReconnectingSource)
        out = tmp_path / "rec.mkv"
        collect = Collect()
        pipeline = Pipeline(source, [], [collect, VideoFileSink(out, preset="ultrafast")])
        runner = threading.Thread(target=pipeline.run, kwargs={"status_interval_s": 0.2})
        runner.start()
        assert first.wait(20) == 0
        time.sleep(gap_s)  # nothing is sent
        second = _sender(send_url, 90, start=100)
        deadline = time.monotonic() + 30
        while sum(1 for c in collect.codes if c >= 100) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        pipeline.stop()
        runner.join(15)
        second.wait(20)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    real = [c for c, h in zip(collect.codes, collect.held, strict=True) if not h]
    assert any(c < 75 for c in real) and sum(1 for c in real if c >= 100) >= 30  # both halves
    assert real == sorted(real)
    assert any(collect.held)  # the outputs ran on through the gap...
    assert max(np.diff(collect.times)) < 0.5  # ...without a pause longer than a few frame intervals
    assert source.stats()["reconnects"] >= 1
    with av.open(str(out)) as container:
        recorded = [decode_index(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    assert any(c < 75 for c in recorded) and any(c >= 100 for c in recorded)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_a_stream_that_stops_and_comes_back_is_reconnected(protocol: str, tmp_path: Path) -> None:
    if protocol == "tcp":  # the sender listens, the engine connects
        port = free_port()
        _stop_and_come_back(f"tcp://127.0.0.1:{port}?listen=1", f"tcp://127.0.0.1:{port}", 1.0, tmp_path)
    else:  # the engine listens, the sender sends; a gap longer than the stall timeout makes it reopen
        port = free_port(socket.SOCK_DGRAM)
        _stop_and_come_back(f"udp://127.0.0.1:{port}?pkt_size=1316", f"udp://127.0.0.1:{port}", 2.5, tmp_path)


def test_an_rtmp_stream_whose_publisher_returns_is_reconnected(nginx_rtmp: int, tmp_path: Path) -> None:
    url = f"rtmp://127.0.0.1:{nginx_rtmp}/live/resilience"
    _stop_and_come_back(url, url, 2.5, tmp_path)


def test_a_udp_url_that_never_sends_says_so(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    result = run_cli("--source", f"udp://127.0.0.1:{port}", "--null", "--stall-timeout", "1.5", "-q", timeout=60)
    assert result.returncode == 1
    assert f"error: cannot open udp://127.0.0.1:{port}: nothing received within 1.5 s" in result.stderr
    assert "Immediate exit requested" not in result.stderr


def test_reconnect_is_refused_for_a_file(test_video: Path) -> None:
    with pytest.raises(SourceError, match="only cameras and network streams reconnect"):
        open_source(SourceSpec(str(test_video), reconnect=True))


def test_reconnect_options_reach_the_source_spec() -> None:
    from realtime_swap.cli import _config_from_args, build_parser

    parser, _ = build_parser()
    args = parser.parse_args(
        ["live", "--source", "rtsp://cam/1", "--no-reconnect", "--stall-timeout", "2", "--drop-policy", "capture"]
    )
    cfg = _config_from_args(args)
    assert (cfg.source.reconnect, cfg.source.stall_timeout_s, cfg.drop_policy) == (False, 2.0, DropPolicy.CAPTURE)
    args = parser.parse_args(["live", "--source", "0", "--reconnect-timeout", "30"])
    cfg = _config_from_args(args)
    assert (cfg.source.reconnect, cfg.source.reconnect_timeout_s, cfg.drop_policy) == (None, 30.0, None)


def test_held_frames_show_the_last_output_picture_with_the_notice() -> None:
    def reopen() -> Source:
        raise SourceError("flaky: connection refused")

    class Darken(Stage):
        name = "darken"

        def process(self, frame: Frame, controls: Controls) -> Frame:
            frame.image = (frame.image // 2).astype(np.uint8)  # the "swap": what the outputs show
            return frame

    images: list[tuple[bool, np.ndarray]] = []

    class Keep(Sink):
        name = "keep"

        def open(self, info: StreamInfo) -> None:
            pass

        def write(self, frame: Frame) -> None:
            images.append((frame.held, frame.image))

    source = ReconnectingSource(FlakySource(0, 5), reopen, reconnect_timeout_s=0.6, backoff_s=(0.1, 0.2))
    with pytest.raises(StageError):
        Pipeline(source, [Darken()], [Keep()]).run()
    last_real = [img for held, img in images if not held][-1]
    held = [img for is_held, img in images if is_held]
    assert held
    h = last_real.shape[0]
    assert np.array_equal(held[-1][: h // 2], last_real[: h // 2])  # the processed picture, not the raw frame
    assert not np.array_equal(held[-1][-20:], last_real[-20:])  # with the notice along the bottom
