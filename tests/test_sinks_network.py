"""Network stream sink: real PyAV receivers on 127.0.0.1 decode what the engine sends.

Every sent frame carries its index as a block code in its top-left corner (conftest's ``encode_index``), so the
receiver knows which frame it decoded and compares it with exactly that frame (PSNR). The bound, 30 dB, is kept
with margin by H.264 at the sink's default bitrate on these 320x240 photos of faces (measured: worst frame
~35 dB, median ~36.5 dB), while swapped colour channels give ~17 dB and the neighbouring frame or a 2 px shift
~23 dB.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from conftest import BLOCK, decode_index, encode_index, free_port

av = pytest.importorskip("av", reason="PyAV is not installed (a GPU machine gets it from .whl/)")

from realtime_swap.errors import SinkError  # noqa: E402
from realtime_swap.metrics import MetricsReport  # noqa: E402
from realtime_swap.pipeline import Pipeline  # noqa: E402
from realtime_swap.sinks.network import (  # noqa: E402
    NetworkStreamSink,
    encoder_works,
    pick_stream_encoder,
    protocol_available,
)
from realtime_swap.sinks.null import NullSink  # noqa: E402
from realtime_swap.sinks.stream_url import StreamEncoder, StreamProtocol, parse_stream_url, redact  # noqa: E402
from realtime_swap.sources.demo import DemoSource  # noqa: E402
from realtime_swap.types import Frame, StreamInfo  # noqa: E402

W, H, FPS = 320, 240, 30.0
PSNR_MIN_DB = 30.0
CODE_ROWS, CODE_COLS = BLOCK, 8 * BLOCK  # the band where conftest.encode_index writes the frame number


def stamp(image: np.ndarray, index: int) -> np.ndarray:
    """``image`` with ``index`` (< 256) written in its top-left corner as conftest's block code."""
    out = image.copy()
    out[:CODE_ROWS, :CODE_COLS] = encode_index(index, W, H)[:CODE_ROWS, :CODE_COLS]
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


class Receiver(threading.Thread):
    """Decodes ``url`` with PyAV in a thread until ``count`` frames arrived; records (index, image, time)."""

    def __init__(self, url: str, options: dict[str, str], count: int, timeout: tuple[float, float] | None) -> None:
        super().__init__(daemon=True)
        self.url, self.options, self.count, self.timeout = url, options, count, timeout
        self.frames: list[tuple[int, np.ndarray, float]] = []
        self.error: BaseException | None = None
        self.opened = threading.Event()

    def run(self) -> None:
        try:
            with av.open(self.url, "r", options=self.options, timeout=self.timeout) as container:
                self.opened.set()
                for frame in container.decode(video=0):
                    image = frame.to_ndarray(format="bgr24")
                    self.frames.append((decode_index(image), image, time.perf_counter()))
                    if len(self.frames) >= self.count:
                        return
        except BaseException as exc:
            self.error = exc


def demo_frames(n: int) -> list[np.ndarray]:
    source = DemoSource(W, H, FPS, realtime=False)
    frames = []
    for i in range(n):
        got = source.read()
        assert got is not None
        frames.append(stamp(got[0], i))
    return frames


def send_paced(sink: NetworkStreamSink, frames: list[np.ndarray], until: Receiver) -> None:
    """Write frames at FPS (as a live engine would) until they run out or the receiver has enough."""
    t0 = time.perf_counter()
    for i, image in enumerate(frames):
        sink.write(Frame(i, image, time.perf_counter(), i / FPS))
        if not until.is_alive():
            return
        time.sleep(max(0.0, t0 + (i + 1) / FPS - time.perf_counter()))


def check_received(receiver: Receiver, sent: list[np.ndarray], at_least: int) -> None:
    assert receiver.error is None, f"receiver failed: {receiver.error}"
    indices = [i for i, _, _ in receiver.frames]
    assert len(indices) >= at_least, f"received {len(indices)} frames"
    assert indices == sorted(indices) and len(set(indices)) == len(indices), f"out of order: {indices}"
    worst = min(psnr(image, sent[i]) for i, image, _ in receiver.frames)
    assert worst > PSNR_MIN_DB, f"worst PSNR {worst:.1f} dB"


def run_stream(send_url: str, recv_url: str, recv_options: dict[str, str], timeout: tuple[float, float] | None) -> None:
    sent = demo_frames(120)
    receiver = Receiver(recv_url, recv_options, count=40, timeout=timeout)
    receiver.start()
    time.sleep(0.3)  # the listener is up before the sender starts
    sink = NetworkStreamSink(send_url)
    sink.open(StreamInfo(W, H, FPS, live=True, name="test"))
    try:
        send_paced(sink, sent, receiver)
    finally:
        sink.close()
    receiver.join(10)
    check_received(receiver, sent, at_least=40)
    counts = sink.counts()
    assert counts["connect_failures"] == 0 and counts["disconnects"] == 0, counts


def test_udp_mpegts_decodes_what_was_sent() -> None:
    port = free_port(socket.SOCK_DGRAM)
    run_stream(f"udp://127.0.0.1:{port}", f"udp://127.0.0.1:{port}", {"fflags": "nobuffer"}, timeout=(10.0, 10.0))


def test_tcp_mpegts_decodes_what_was_sent() -> None:
    port = free_port()
    run_stream(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port}?listen=1", {}, timeout=(10.0, 10.0))


def test_rtmp_push_to_an_ffmpeg_listener() -> None:
    """RTMP handshake, publish and FLV/H.264 through FFmpeg's own RTMP server mode (``-listen 1``)."""
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/test"
    run_stream(url, url, {"listen": "1", "timeout": "15"}, timeout=None)


def test_rtsp_push_to_an_ffmpeg_listener() -> None:
    """RTSP ANNOUNCE/RECORD push (interleaved TCP) to FFmpeg's RTSP server mode (``-rtsp_flags listen``)."""
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    run_stream(url, url, {"rtsp_flags": "listen", "listen_timeout": "15"}, timeout=None)


def test_rtmp_through_nginx(nginx_rtmp: int) -> None:
    url = f"rtmp://127.0.0.1:{nginx_rtmp}/live/test"
    sent = demo_frames(240)
    sink = NetworkStreamSink(url)
    sink.open(StreamInfo(W, H, FPS, live=True, name="test"))
    receiver = Receiver(url, {}, count=40, timeout=(10.0, 10.0))
    try:
        t0 = time.perf_counter()
        for i, image in enumerate(sent):
            sink.write(Frame(i, image, time.perf_counter(), i / FPS))
            if i == 30:  # the stream is published: a player joins (a keyframe every second)
                receiver.start()
            if i > 30 and not receiver.is_alive():
                break
            time.sleep(max(0.0, t0 + (i + 1) / FPS - time.perf_counter()))
    finally:
        sink.close()
    receiver.join(10)
    check_received(receiver, sent, at_least=40)
    assert sink.counts()["reconnects"] == 0


def test_tcp_receiver_leaves_and_returns_engine_keeps_running_and_reconnects() -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    sink = NetworkStreamSink(url, reconnect_min_s=0.2, reconnect_max_s=0.4)
    null = NullSink()
    pipeline = Pipeline(DemoSource(W, H, FPS, realtime=True), [], [sink, null])
    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(report=pipeline.run()), daemon=True)

    first = Receiver(f"{url}?listen=1", {}, count=15, timeout=(10.0, 10.0))
    first.start()
    time.sleep(0.3)
    runner.start()
    first.join(15)
    assert first.error is None and len(first.frames) == 15, first.error  # ... and the receiver hangs up

    deadline = time.monotonic() + 10
    while sink.counts()["disconnects"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.counts()["disconnects"] == 1
    frames_at_drop = null.frames
    time.sleep(1.0)  # nobody listens: connection refused, retried with back-off
    assert sink.counts()["connect_failures"] >= 1
    assert null.frames > frames_at_drop + 10  # the other output kept getting frames
    assert runner.is_alive()

    second = Receiver(f"{url}?listen=1", {}, count=15, timeout=(10.0, 10.0))
    second.start()
    second.join(15)
    assert second.error is None and len(second.frames) == 15, second.error
    assert sink.counts()["reconnects"] >= 1, sink.stats()
    indices = [i for i, _, _ in second.frames]
    assert indices == sorted(indices)

    pipeline.stop()
    runner.join(15)
    assert not runner.is_alive()
    report = result["report"]
    assert isinstance(report, MetricsReport)
    outputs = report.extra["outputs"]
    assert isinstance(outputs, dict) and outputs[sink.name]["reconnects"] == sink.counts()["reconnects"]


def test_write_hands_frames_over_while_nothing_listens() -> None:
    """Connects happen on the sender thread, retried with back-off; every written frame is accounted for."""
    sink = NetworkStreamSink(f"tcp://127.0.0.1:{free_port()}", reconnect_min_s=0.05, reconnect_max_s=0.1)
    sink.open(StreamInfo(W, H, FPS, live=True, name="test"))
    image = demo_frames(1)[0]
    try:
        for i in range(60):
            sink.write(Frame(i, image, time.perf_counter(), i / FPS))
            time.sleep(0.01)
        counts = sink.counts()
    finally:
        sink.close()
    assert counts["connect_failures"] >= 2 and counts["frames_sent"] == 0
    assert counts["frames_offline"] + counts["frames_dropped"] + counts["connect_failures"] == 60
    assert "refused" in sink.last_error.lower()


def write_for(sink: NetworkStreamSink, seconds: float) -> None:
    image = demo_frames(1)[0]
    for i in range(round(seconds * FPS)):
        sink.write(Frame(i, image, time.perf_counter(), i / FPS))
        time.sleep(1 / FPS)


def test_rtmp_server_refusing_or_stalling_is_retried_without_stopping_the_engine() -> None:
    """The RTMP handshake runs in the sender's child process: a server that accepts the TCP connection and then
    says nothing cannot freeze the engine; the child is killed after write_timeout_s and the sink retries."""
    refused = NetworkStreamSink(
        f"rtmp://127.0.0.1:{free_port()}/live/secret-key", reconnect_min_s=0.2, reconnect_max_s=0.2
    )
    refused.open(StreamInfo(W, H, FPS, live=True, name="test"))
    try:
        write_for(refused, 1.5)
    finally:
        refused.close()
    assert refused.counts()["connect_failures"] >= 1 and refused.counts()["frames_sent"] > 0
    assert "refused" in refused.last_error.lower() and "secret-key" not in refused.last_error

    with socket.socket() as silent:  # accepts, never answers the handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        url = f"rtmp://127.0.0.1:{port}/live/x"
        stalled = NetworkStreamSink(url, connect_timeout_s=1.0, write_timeout_s=1.0, reconnect_min_s=0.2)
        stalled.open(StreamInfo(W, H, FPS, live=True, name="test"))
        try:
            write_for(stalled, 3.0)
        finally:
            stalled.close()
    assert stalled.counts()["connect_failures"] >= 1
    assert "no progress" in stalled.last_error and not stalled.connected


def test_url_checks_and_redaction() -> None:
    assert parse_stream_url("udp://239.0.0.1:5000?pkt_size=188&ttl=4").ttl == 4
    assert parse_stream_url("rtmp://live.example.com/app/key").port == 1935
    assert parse_stream_url("srt://127.0.0.1:9000").container == "mpegts"
    for bad, words in (
        ("http://example.com/x", "unsupported scheme"),
        ("udp://127.0.0.1", "port is required"),
        ("udp://127.0.0.1:5000?pkt_size=1000", "multiple of 188"),
        ("tcp://127.0.0.1:5000?bogus=1", "unknown option"),
        ("rtmp:///app/key", "no host"),
    ):
        with pytest.raises(SinkError, match=words):
            parse_stream_url(bad)
    assert redact("rtmp://user:pw@a.rtmp.youtube.com/live2/SECRET-KEY?x=1") == "rtmp://a.rtmp.youtube.com/live2/***"
    assert {p.value for p in StreamProtocol} == {"rtmp", "rtmps", "rtsp", "srt", "udp", "tcp"}


def test_srt_needs_an_ffmpeg_with_libsrt() -> None:
    if protocol_available("srt"):
        pytest.skip("this FFmpeg build has SRT; the missing-protocol message cannot be shown here")
    with pytest.raises(SinkError, match="no srt protocol"):
        NetworkStreamSink("srt://127.0.0.1:9000")


def test_encoder_choice_probes_by_opening() -> None:
    assert encoder_works("libx264")
    assert not encoder_works("no_such_encoder")
    expected = "h264_nvenc" if encoder_works("h264_nvenc") else "libx264"
    assert pick_stream_encoder(StreamEncoder.AUTO) == expected
    if not encoder_works("h264_nvenc"):
        with pytest.raises(SinkError, match="does not open"):
            pick_stream_encoder(StreamEncoder.NVENC)


@pytest.mark.gpu
def test_udp_with_nvenc() -> None:
    if not encoder_works("h264_nvenc"):
        pytest.skip("h264_nvenc does not open here (no NVIDIA GPU or driver)")
    port = free_port(socket.SOCK_DGRAM)
    sent = demo_frames(120)
    receiver = Receiver(f"udp://127.0.0.1:{port}", {"fflags": "nobuffer"}, count=40, timeout=(10.0, 10.0))
    receiver.start()
    time.sleep(0.3)
    sink = NetworkStreamSink(f"udp://127.0.0.1:{port}", encoder=StreamEncoder.NVENC)
    sink.open(StreamInfo(W, H, FPS, live=True, name="test"))
    try:
        send_paced(sink, sent, receiver)
    finally:
        sink.close()
    receiver.join(10)
    check_received(receiver, sent, at_least=40)
    assert sink.stats()["encoder"] == "h264_nvenc"
