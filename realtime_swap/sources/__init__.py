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
    and images are paced); loop: restart a file at its end; demo_faces: actors in the demo."""

    spec: str = "demo"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    realtime: bool | None = None
    loop: bool = False
    demo_faces: int = 1


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
    if spec.isdigit() or spec.startswith("/dev/video"):
        from realtime_swap.sources.webcam import WebcamSource

        return WebcamSource(int(spec) if spec.isdigit() else spec, s.width, s.height, s.fps)
    if is_url(spec):
        check_url(spec)
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
