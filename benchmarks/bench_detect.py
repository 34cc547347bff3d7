"""Detect stage figures at 640 x 480: detect + landmarks + align (+ mask) per frame, ms.

Scenarios (each a stream of ``--frames`` frames, timed per frame after ``--warmup`` frames):

* 1 face, tracked: the demo stream (scikit-image's astronaut moving), BlazeFace short range every
  ``--detect-every`` frames, FaceMesh in the previous frame's landmarks ROI, One-Euro smoothing, alignment
  (whole face, ``--size`` px) and mesh mask: ``DetectStage.process``.
* 1 face, detector every frame: the same with ``detect_every=1``.
* 1 face, no tracking: ``FaceAnalyzer`` on each frame alone (detector + FaceMesh from the detection ROI, 1 and
  2 passes) + alignment and mask.
* 6 faces: insightface's t1.jpg scaled into a 640 x 480 frame (faces ~50 px wide), BlazeFace full range,
  tracked (``max_faces=6``) and not tracked.

Also the parts alone: the detectors, FaceMesh at batch 1 and 6, the crop, alignment + mask; and the real
model's landmark jitter on a still face with sensor noise (Gaussian, ``--noise`` grey levels per pixel and
frame): RMS distance of each landmark from its mean position, raw and with the tracker's One-Euro smoothing.

    PYTHONPATH=. python benchmarks/bench_detect.py [--frames 200] [--threads N]   (or after pip install -e .)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
from realtime_swap.detect.engine import DetectEngine
from realtime_swap.detect.facemesh import FaceMeshLandmarker, roi_from_landmarks
from realtime_swap.detect.stage import AnalyzerOptions, DetectStage, FaceAnalyzer, align_faces
from realtime_swap.detect.tracker import FaceSelection, FaceTracker, SmoothingOptions, TrackerOptions
from realtime_swap.infer import Backend
from realtime_swap.sources.demo import DemoSource
from realtime_swap.stages import Controls
from realtime_swap.types import FaceType, Frame

WIDTH, HEIGHT = 640, 480


def t1_frame() -> np.ndarray:
    """insightface's t1.jpg (1280 x 886) scaled to 640 px wide, centred on a 640 x 480 black frame."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface (installed --no-deps, for its images) is needed for the 6-face figures")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    scaled = cv2.resize(image, (WIDTH, round(image.shape[0] * WIDTH / image.shape[1])), interpolation=cv2.INTER_AREA)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    top = (HEIGHT - scaled.shape[0]) // 2
    frame[top : top + scaled.shape[0]] = scaled
    return frame


def timed(fn: Callable[[int], object], frames: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """(wall ms, CPU ms of this process) per call of fn(i) for i in range(warmup + frames), warm-up dropped.

    CPU time does not count waiting for a core, so it stays meaningful when other jobs load the machine (with
    one intra-op thread, ONNX Runtime runs on the calling thread; on an idle machine wall ~= CPU).
    """
    wall, cpu = [], []
    for i in range(warmup + frames):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return np.array(wall[warmup:]), np.array(cpu[warmup:])


def report(name: str, ms: tuple[np.ndarray, np.ndarray], faces: str = "") -> None:
    wall, cpu = ms
    print(
        f"{name:<50} wall median {np.median(wall):6.2f} p95 {np.percentile(wall, 95):6.2f} | "
        f"CPU median {np.median(cpu):6.2f} p95 {np.percentile(cpu, 95):6.2f} ms  {faces}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--size", type=int, default=256, help="aligned crop size, px")
    parser.add_argument("--noise", type=float, default=4.0, help="sensor noise sigma for the jitter figure")
    parser.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model (TrackerOptions' default: 1)"
    )
    args = parser.parse_args()
    threads = args.threads
    print(f"{WIDTH}x{HEIGHT}, {os.cpu_count()} cores, intra-op threads {threads}, "
          f"load average {os.getloadavg()[0]:.2f} (1 min), {args.frames} frames per figure")  # fmt: skip

    source = DemoSource(WIDTH, HEIGHT, faces=1, realtime=False)
    stream = [source.render(i) for i in range(args.frames + args.warmup)]
    group = t1_frame()
    fps = source.fps

    print("\n-- parts")
    short = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, Backend.ORT_CPU, intra_op_threads=threads)
    full = BlazeFaceDetector(BlazeFaceModel.FULL_RANGE, Backend.ORT_CPU, intra_op_threads=threads)
    mesh = FaceMeshLandmarker(Backend.ORT_CPU, intra_op_threads=threads)
    report(
        "BlazeFace short range (letterbox + model + decode)", timed(lambda i: short.detect(stream[i]), args.frames, 5)
    )
    report("BlazeFace full range", timed(lambda i: full.detect(stream[i]), args.frames, 5))
    analyzer = FaceAnalyzer(
        AnalyzerOptions(detector=BlazeFaceModel.SHORT_RANGE, backend=Backend.ORT_CPU, intra_op_threads=threads)
    )
    (face,) = analyzer.analyze(stream[0])
    assert face.landmarks is not None
    roi = roi_from_landmarks(face.landmarks)
    report("FaceMesh crop (warpAffine 192 px)", timed(lambda i: mesh.crop(stream[i], roi), args.frames, 5))
    report(
        "FaceMesh, 1 ROI (crop + model + unproject)", timed(lambda i: mesh.landmark(stream[i], [roi]), args.frames, 5)
    )
    group_faces = FaceAnalyzer(AnalyzerOptions(backend=Backend.ORT_CPU, intra_op_threads=threads)).analyze(group)
    group_rois = [roi_from_landmarks(f.landmarks) for f in group_faces if f.landmarks is not None]
    report(
        f"FaceMesh, {len(group_rois)} ROIs in one batch",
        timed(lambda i: mesh.landmark(group, group_rois), args.frames, 5),
    )
    report(f"align whole face {args.size} px + mesh mask, 1 face",
           timed(lambda i: align_faces(stream[0], [face], FaceType.WHOLE_FACE, args.size), args.frames, 5))  # fmt: skip

    def stage_run(stage: DetectStage, images: list[np.ndarray]) -> tuple[tuple[np.ndarray, np.ndarray], list[int]]:
        stage.warmup(source.info)
        counts: list[int] = []

        def step(i: int) -> None:
            frame = Frame(index=i, image=images[i % len(images)], t_capture=0.0, pts=i / fps)
            stage.process(frame, Controls())
            counts.append(len(frame.faces))

        return timed(step, args.frames, args.warmup), counts

    def faces_seen(counts: list[int]) -> str:
        values, n = np.unique(counts, return_counts=True)
        return "faces per frame: " + ", ".join(f"{v} x{c}" for v, c in zip(values, n, strict=True))

    print(f"\n-- 1 face (demo stream), detect + landmarks + align {args.size} px + mask, per frame")
    for every, label in ((args.detect_every, f"tracked, detector every {args.detect_every} frames"),
                         (1, "tracked, detector every frame")):  # fmt: skip
        opts = TrackerOptions(detect_every=every, engine=DetectEngine(Backend.ORT_CPU), intra_op_threads=threads)
        ms, counts = stage_run(DetectStage(opts, FaceType.WHOLE_FACE, args.size), stream)
        report(label, ms, faces_seen(counts))
    for passes in (1, 2):
        an = FaceAnalyzer(
            AnalyzerOptions(
                BlazeFaceModel.SHORT_RANGE, refine_passes=passes, backend=Backend.ORT_CPU, intra_op_threads=threads
            )
        )
        counts = []

        def single(i: int, an: FaceAnalyzer = an, counts: list[int] = counts) -> None:
            counts.append(len(an.analyze(stream[i], FaceType.WHOLE_FACE, args.size)))

        report(f"no tracking (FaceAnalyzer, {passes} FaceMesh pass{'es' if passes > 1 else ''})",
               timed(single, args.frames, args.warmup), faces_seen(counts))  # fmt: skip

    print(f"\n-- still face (demo frame 0, face ~115 px wide), sensor noise sigma {args.noise:g}: landmark jitter")
    for smoothing in (SmoothingOptions(enabled=False), SmoothingOptions()):
        opts = TrackerOptions(smoothing=smoothing, engine=DetectEngine(Backend.ORT_CPU), intra_op_threads=threads)
        jitter = still_face_jitter(stream[0], opts, args.frames, args.noise)
        label = (
            "raw FaceMesh"
            if not smoothing.enabled
            else (f"One-Euro (min_cutoff {smoothing.min_cutoff:g} Hz, beta {smoothing.beta:g})")
        )
        print(f"{label:<52} {jitter:6.3f} px RMS")  # fmt: skip

    print(f"\n-- 6 faces (t1.jpg in 640x480), full range, detect + landmarks + align {args.size} px + mask")
    opts = TrackerOptions(BlazeFaceModel.FULL_RANGE, args.detect_every, max_faces=6, selection=FaceSelection.ALL,
                          engine=DetectEngine(Backend.ORT_CPU), intra_op_threads=threads)  # fmt: skip
    ms, counts = stage_run(DetectStage(opts, FaceType.WHOLE_FACE, args.size), [group])
    report(f"tracked, detector every {args.detect_every} frames", ms, faces_seen(counts))
    an6 = FaceAnalyzer(AnalyzerOptions(refine_passes=1, backend=Backend.ORT_CPU, intra_op_threads=threads))
    counts6: list[int] = []
    report("no tracking (FaceAnalyzer, 1 FaceMesh pass)",
           timed(lambda i: counts6.append(len(an6.analyze(group, FaceType.WHOLE_FACE, args.size))),
                 args.frames, args.warmup), faces_seen(counts6))  # fmt: skip


def still_face_jitter(image: np.ndarray, options: TrackerOptions, frames: int, noise: float) -> float:
    """RMS px distance of the tracked landmarks from their mean on a still face with per-frame sensor noise."""
    rng = np.random.default_rng(0)
    tracker = FaceTracker(options)
    tracks = []
    for i in range(frames + 10):
        noisy = np.clip(image + rng.normal(0.0, noise, image.shape), 0, 255).astype(np.uint8)
        faces = tracker.update(noisy, i / 30.0)
        if i >= 10 and faces and faces[0].landmarks is not None:  # 10 frames to settle the filter
            tracks.append(faces[0].landmarks)
    pts = np.array(tracks, np.float64)
    return float(np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=-1).mean()))


if __name__ == "__main__":
    main()
