"""Frame sources. ``open_source`` turns a user's ``--source`` string into the right one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source

__all__ = ["Source", "SourceSpec", "open_source"]


@dataclass(frozen=True)
class SourceSpec:
    """What to open. spec: ``demo``, a camera index (``0``), a device path (``/dev/video0``), a video file,
    an image or image folder, or a URL. width/height/fps: requested (camera, demo); realtime: pace frames
    (None: the source kind's default — cameras and streams are live, files decode as fast as possible, demo
    and images are paced); loop: restart a file at its end; demo_faces: actors in the demo.
    reconnect: reopen a camera or network stream that drops, errors or stalls (None: on for those, which are
    the only sources that can drop); stall_timeout_s: opening a stream, or waiting for its next frame, longer
    than this fails (at open: an error; later: a drop, which without reconnect ends the run);
    reconnect_timeout_s: give up after being down this long (None: never)."""

    spec: str = "demo"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    realtime: bool | None = None
    loop: bool = False
    demo_faces: int = 1
    reconnect: bool | None = None
    stall_timeout_s: float = 5.0
    reconnect_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.stall_timeout_s <= 0:
            raise SourceError(f"--stall-timeout must be > 0 s, got {self.stall_timeout_s:g}")
        if self.reconnect_timeout_s is not None and self.reconnect_timeout_s <= 0:
            raise SourceError(f"--reconnect-timeout must be > 0 s, got {self.reconnect_timeout_s:g}")


def open_source(s: SourceSpec) -> Source:
    """Open the source ``s`` describes; raises SourceError with a one-line reason when it cannot."""
    from realtime_swap.sources.av_source import AVSource, check_url, is_url
    from realtime_swap.sources.images import IMAGE_SUFFIXES, ImageSource

    spec = s.spec.strip()
    if spec == "demo":
        from realtime_swap.sources.demo import DemoSource

        return DemoSource(
            s.width or 640,
            s.height or 480,
            s.fps or 30.0,
            faces=s.demo_faces,
            realtime=True if s.realtime is None else s.realtime,
        )
    camera = spec.isdigit() or spec.startswith("/dev/video")
    stream = not camera and is_url(spec) and check_url(spec) != "file"
    if camera or stream:
        if camera:
            from realtime_swap.sources.webcam import WebcamSource

            def reopen() -> Source:
                return WebcamSource(int(spec) if spec.isdigit() else spec, s.width, s.height, s.fps)

        else:

            def reopen() -> Source:
                timeout = s.stall_timeout_s
                return AVSource(spec, realtime=bool(s.realtime), open_timeout_s=timeout, read_timeout_s=timeout)

        first = reopen()  # the first open fails fast: a dead URL or a missing camera is an error, not a wait
        if s.reconnect is False:
            return first
        from realtime_swap.sources.reconnect import ReconnectingSource

        return ReconnectingSource(
            first, reopen, stall_timeout_s=s.stall_timeout_s, reconnect_timeout_s=s.reconnect_timeout_s
        )
    if s.reconnect:
        raise SourceError(f"--reconnect: only cameras and network streams reconnect, and {spec} is neither")
    if is_url(spec):
        return AVSource(spec, realtime=bool(s.realtime))
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"input not found: {path}")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(
            path,
            fps=s.fps or 30.0,
            realtime=True if s.realtime is None else s.realtime,
        )
    return AVSource(path, realtime=bool(s.realtime), loop=s.loop)
