"""Original vs swapped: one frame of a ``run_live.py --record`` recording of the demo source beside the demo's own
render of the same instant (the recording keeps the source pts; the live loop drops frames, so frames are
matched by pts, not by position).

Usage: ``python trained_models/demo_swap/side_by_side.py /tmp/x.mp4 out.png [--at 0.8]`` (position in the
recording as a fraction of its frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from realtime_swap.sources.demo import DemoSource


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--at", type=float, default=0.8, help="which recorded frame, 0..1 (default 0.8)")
    parser.add_argument("--crop", action="store_true", help="only the face region (upscaled 2x)")
    args = parser.parse_args()
    with av.open(str(args.recording)) as container:
        frames = [(f.time, f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    pts, recorded = frames[min(len(frames) - 1, int(args.at * len(frames)))]
    swapped: np.ndarray = recorded
    height, width = swapped.shape[:2]
    source = DemoSource(width, height, fps=30.0, realtime=False)
    index = round(float(pts or 0.0) * source.fps)
    original: np.ndarray = source.render(index)
    if args.crop:
        x0, y0, side = width // 2 - 120, 40, 240
        original = cv2.resize(original[y0 : y0 + side, x0 : x0 + side], None, fx=2, fy=2)
        swapped = cv2.resize(swapped[y0 : y0 + side, x0 : x0 + side], None, fx=2, fy=2)
    gap = np.full((original.shape[0], 8, 3), 255, np.uint8)
    cv2.imwrite(str(args.out), np.hstack([original, gap, swapped]))
    print(f"{args.out}: demo frame {index} (pts {pts:.3f} s), original | swapped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
