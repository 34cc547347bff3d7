"""Recording next to other outputs, with the source's audio in sync: from a file (second demux) and from a live
stream (packets handed over by the source's one demuxer); and a recording stopped by Ctrl-C is playable.

Sync is measured on real media: the test clip has one white frame and one click in its audio at the same
instant (1.0 s); in the recording the click must start within one frame period of the white frame.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ROOT

from realtime_swap.errors import StageError
from realtime_swap.pipeline import DropPolicy, Pipeline
from realtime_swap.sinks.null import NullSink
from realtime_swap.sinks.video_file import VideoFileSink
from realtime_swap.sources.av_source import AVSource

FPS = 30
RATE = 48000
FLASH_S = 1.0
DEMO_ARGS = ("--source", "demo", "--width", "320", "--height", "240", "--no-swap")


def make_clip(path: Path, seconds: float = 2.0, fmt: str | None = None, flash_s: float = FLASH_S) -> None:
    """H.264 + AAC clip: dark frames with one white frame at flash_s; silence with a 5 ms click at flash_s."""
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.codec_context.gop_size = FPS // 2  # a keyframe every 0.5 s, like a live feed a reader can join
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for i in range(round(seconds * FPS)):
            image = np.full((120, 160, 3), 255 if i == round(flash_s * FPS) else 16, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        samples = np.zeros(round(seconds * RATE), np.float32)
        click = round(flash_s * RATE)
        samples[click : click + RATE // 200] = 0.8
        for start in range(0, samples.size, 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, start, Fraction(1, RATE)
            out.mux(audio.encode(chunk))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


def flash_and_click(path: Path) -> tuple[float, float]:
    """(time of the first bright frame, time of the first loud audio sample) in ``path``, seconds."""
    with av.open(str(path)) as container:
        flash = next(f.time for f in container.decode(video=0) if f.to_ndarray(format="gray").mean() > 128)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            loud = np.nonzero(np.abs(frame.to_ndarray()[0]) > 0.3)[0]
            if loud.size:
                return float(flash), float(frame.time + loud[0] / frame.sample_rate)
    raise AssertionError(f"no click in the audio of {path}")


def test_clip_itself_is_in_sync(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    flash, click = flash_and_click(clip)
    assert abs(flash - FLASH_S) < 1e-6 and abs(click - FLASH_S) < 1e-3


def test_recording_from_a_file_keeps_audio_in_sync(tmp_path: Path) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / "rec.mp4"
    make_clip(clip)
    source = AVSource(clip)
    assert source.audio_url == str(clip)
    recording = VideoFileSink(out)
    recording.set_audio_source(source.audio_url)
    null = NullSink()
    report = Pipeline(source, [], [recording, null]).run()  # tee: the recording next to another output
    assert report.frames_processed == 2 * FPS and null.frames == 2 * FPS
    flash, click = flash_and_click(out)
    assert abs(click - flash) < 1.0 / FPS, f"flash {flash:.3f} s, click {click:.3f} s"
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def serve_once(data: bytes, seconds: float) -> tuple[int, threading.Thread]:
    """A TCP server on 127.0.0.1 that sends ``data`` to the first client over ``seconds`` and hangs up: a live
    MPEG-TS feed (its reader probes the first part of it and discards that, as it would on a camera's stream)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(20)

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                chunks = np.array_split(np.frombuffer(data, np.uint8), max(1, round(seconds * 20)))
                for chunk in chunks:
                    conn.sendall(chunk.tobytes())
                    time.sleep(seconds / len(chunks))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return int(server.getsockname()[1]), thread


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recording_from_a_live_stream_keeps_audio_in_sync(tmp_path: Path, suffix: str) -> None:
    clip, out = tmp_path / "clip.ts", tmp_path / f"rec{suffix}"
    make_clip(clip, seconds=3.0, fmt="mpegts", flash_s=2.0)
    port, server = serve_once(clip.read_bytes(), seconds=1.5)
    source = AVSource(f"tcp://127.0.0.1:{port}")
    assert source.audio_url is None  # a live stream cannot be demuxed twice ...
    feed = source.audio_feed()
    assert feed is not None  # ... so its demuxer hands the audio packets over
    recording = VideoFileSink(out)
    recording.set_audio_feed(feed)
    report = Pipeline(source, [], [recording, NullSink()], drop_policy=DropPolicy.BLOCK).run()
    server.join(5)
    assert report.frames_processed > FPS  # the rest of the first second went to stream probing
    flash, click = flash_and_click(out)
    assert abs(click - flash) < 1.0 / FPS, f"flash {flash:.3f} s, click {click:.3f} s"
    with av.open(str(out)) as container:  # ADTS became raw AAC with its header in the container
        assert container.streams.audio[0].codec_context.extradata


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_recording_is_playable_after_ctrl_c_or_a_kill(tmp_path: Path, how: signal.Signals) -> None:
    out = tmp_path / "live.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_live.py"), *DEMO_ARGS, "--no-preview", "--record", str(out), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # wait for the first fragment on disk (a keyframe every 2 s)
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20000):
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(how)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    if how is signal.SIGINT:
        assert proc.returncode == 130, err.decode(errors="replace")
    with av.open(str(out)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= 2 * 30, f"only {decoded} frames playable"


def test_a_reconnecting_stream_source_still_records_its_audio(tmp_path: Path) -> None:
    from realtime_swap.sources import SourceSpec, open_source
    from realtime_swap.sources.reconnect import ReconnectingSource

    clip, out = tmp_path / "clip.ts", tmp_path / "rec.mkv"
    make_clip(clip, seconds=3.0, fmt="mpegts", flash_s=2.0)
    port, server = serve_once(clip.read_bytes(), seconds=1.5)
    source = open_source(SourceSpec(f"tcp://127.0.0.1:{port}", reconnect_timeout_s=1.0))
    assert isinstance(source, ReconnectingSource)
    feed = source.audio_feed()
    assert feed is not None  # the first connection's demuxer hands its audio packets over
    recording = VideoFileSink(out)
    recording.set_audio_feed(feed)
    with pytest.raises(StageError, match="did not come back"):  # the server sends once, then is gone
        Pipeline(source, [], [recording, NullSink()], drop_policy=DropPolicy.BLOCK).run()
    server.join(5)
    flash, click = flash_and_click(out)
    assert abs(click - flash) < 1.0 / FPS, f"flash {flash:.3f} s, click {click:.3f} s"
