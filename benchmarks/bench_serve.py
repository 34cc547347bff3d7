"""Issue #14 figures: many streams on one shared swap executor, a browser's glass-to-glass latency, Ray Serve.

1. Streams: 1, 2 and 4 simultaneous demo streams at 480p (paced at 30 fps like cameras, one face each, the
   shipped model, newest frame wins) through one shared executor — per-stream fps and capture-to-output p95,
   aggregate faces swapped per second — batched (``--window`` ms, up to 8 faces per call) against one model
   call per face, the two alternated round by round in the same run; the ratio is batched / per-face.
2. Browser (``--browser``): headless Chromium with a fake camera playing a .y4m whose frames carry their
   number; the page's own camera preview and the swapped stream it receives are read back in the page at the
   same instant, and the difference of their numbers is the glass-to-glass latency (camera frame shown →
   swapped frame shown, through WebRTC both ways and the engine), in frames of 1/30 s.
3. Ray (``--ray``): the added latency of one swap call (one face) through a local Ray Serve deployment over
   the in-process executor, alternated.

Run: python benchmarks/bench_serve.py [--seconds 10] [--rounds 2] [--browser] [--ray] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from realtime_swap.config import EngineConfig, FaceSpec
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import build_stream_pipeline, load_swap_models
from realtime_swap.sinks.null import NullSink
from realtime_swap.sources.demo import DemoSource
from realtime_swap.swap.executor import BatchingSwapExecutor

FACES = FaceSpec(backend=Backend.ORT_CPU)


def run_streams(executor: BatchingSwapExecutor, streams: int, seconds: float) -> dict[str, float]:
    """``streams`` demo streams at 480p / 30 fps for ``seconds`` on ``executor``; per-stream and total figures."""
    cfg = EngineConfig(faces=FACES, duration_s=seconds)  # duration counts from each engine's start
    pipelines = [
        build_stream_pipeline(cfg, DemoSource(640, 480, 30.0, realtime=True), [NullSink()], executor)[0]
        for _ in range(streams)
    ]
    reports: list[object] = [None] * streams
    counted: list[tuple[float, int]] = []  # (time, faces swapped so far) after the warm-up and at the end
    warm_s = min(2.0, seconds / 3)  # stage warm-up and the first detections are left out of faces/s
    timer = threading.Timer(warm_s, lambda: counted.append((time.perf_counter(), executor.faces)))

    def run(i: int) -> None:
        reports[i] = pipelines[i].run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    timer.start()
    for t in threads:
        t.join()
    timer.join()
    counted.append((time.perf_counter(), executor.faces))
    (t_a, faces_a), (t_b, faces_b) = counted
    fps = [r.fps for r in reports]  # type: ignore[attr-defined]
    p95 = [r.latency_ms.get("p95", 0.0) for r in reports]  # type: ignore[attr-defined]
    return {
        "fps_per_stream": statistics.mean(fps),
        "p95_ms_worst_stream": max(p95),
        "faces_per_s": (faces_b - faces_a) / (t_b - t_a),
    }


def bench_streams(seconds: float, rounds: int, window_ms: float) -> dict[str, dict[str, dict[str, float]]]:
    modes = {
        "batched": BatchingSwapExecutor(load_swap_models(FACES), window_ms=window_ms, max_batch=8),
        "per_face": BatchingSwapExecutor(load_swap_models(FACES), window_ms=0.0, max_batch=1),
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in modes}
    for streams in (1, 2, 4):
        for _ in range(rounds):
            for mode, executor in modes.items():  # alternated, so both see the same machine load
                results[mode].setdefault(str(streams), []).append(run_streams(executor, streams, seconds))
    sizes = dict(modes["batched"].batch_sizes)
    for executor in modes.values():
        executor.close()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, by_streams in results.items():
        out[mode] = {n: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for n, runs in by_streams.items()}
    out["batch_sizes"] = {str(k): float(v) for k, v in sorted(sizes.items())}  # type: ignore[assignment]
    return out


READ_BOTH = """() => {
  const grab = (id) => {
    const v = document.getElementById(id);
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    return c;
  };
  const local = grab('local'), remote = grab('remote');  // drawn at the same instant, encoded after
  return [local.toDataURL('image/png').split(',')[1], remote.toDataURL('image/png').split(',')[1]];
}"""


def bench_browser(samples: int) -> dict[str, float]:
    """Glass-to-glass latency in a headless Chromium page (ms, p50/p95 over ``samples`` read-backs)."""
    import cv2
    from playwright.sync_api import sync_playwright

    from realtime_swap.serve.app import BackgroundServer, ServeSettings, make_app
    from realtime_swap.serve.client import draw_code, face_picture, read_code

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium here: apt-get install chromium")
    frames, fps = 150, 30  # the fake camera loops the file: numbers are unambiguous up to 5 s of latency
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "camera.y4m"
        picture = face_picture(640, 480)
        with y4m.open("wb") as f:
            f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            for n in range(frames):
                image = picture.copy()
                draw_code(image, n)
                f.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())
        executor = BatchingSwapExecutor(load_swap_models(FACES), window_ms=3.0)
        app = make_app(EngineConfig(faces=FACES), executor, ServeSettings())
        latencies: list[float] = []
        with BackgroundServer(app) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                args=[
                    "--use-fake-device-for-media-stream",
                    "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-video-capture={y4m}",
                ],
            )
            page = browser.new_page()
            page.goto(server.url + "/")
            page.click("#start")
            page.wait_for_function("() => window.realtimeSwap.framesIn > 60", timeout=120_000)
            for _ in range(samples):
                shots = page.evaluate(READ_BOTH)
                local, remote = (
                    cv2.imdecode(np.frombuffer(base64.b64decode(s), np.uint8), cv2.IMREAD_COLOR) for s in shots
                )
                behind = (read_code(local) - read_code(remote)) % frames
                latencies.append(behind * 1000.0 / fps)
                time.sleep(0.3)
            browser.close()
        executor.close()
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "samples": float(len(latencies)),
    }


def bench_ray(calls: int) -> dict[str, float]:
    """One-face swap calls: Ray Serve deployment (local cluster) against the in-process executor, alternated."""
    from realtime_swap.serve.ray_executor import RayDeploymentOptions, RaySwapExecutor

    crops = np.random.default_rng(0).random((1, 96, 96, 3), dtype=np.float32)
    local = BatchingSwapExecutor(load_swap_models(FACES), window_ms=0.0, max_batch=1)
    remote = RaySwapExecutor.start(FACES, "local", RayDeploymentOptions(replicas=1, window_ms=0.0, max_batch=1))
    times: dict[str, list[float]] = {"in_process": [], "ray": []}
    try:
        for ex in (local, remote):
            ex.swap(0, crops, None)  # warm
        for _ in range(calls):
            for name, ex in (("in_process", local), ("ray", remote)):
                t0 = time.perf_counter()
                ex.swap(0, crops, None)
                times[name].append((time.perf_counter() - t0) * 1000.0)
    finally:
        remote.close()
        local.close()
    p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    return {
        "in_process_p50_ms": p50["in_process"],
        "ray_p50_ms": p50["ray"],
        "added_p50_ms": p50["ray"] - p50["in_process"],
        "ray_p95_ms": float(np.percentile(times["ray"], 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per streams run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds per stream count (default 2)")
    parser.add_argument("--window", type=float, default=3.0, help="batch window of the batched executor, ms")
    parser.add_argument("--browser", action="store_true", help="also measure glass-to-glass in headless Chromium")
    parser.add_argument("--samples", type=int, default=20, help="browser read-backs (default 20)")
    parser.add_argument("--ray", action="store_true", help="also measure the added latency of Ray Serve calls")
    parser.add_argument("--ray-calls", type=int, default=200, help="calls per executor for --ray (default 200)")
    parser.add_argument("--no-streams", action="store_true", help="skip the streams figures")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    if not args.no_streams:
        streams = bench_streams(args.seconds, args.rounds, args.window)
        figures["streams"] = streams
        print("streams  mode       fps/stream  p95 ms (worst)  faces/s")
        for n in ("1", "2", "4"):
            for mode in ("batched", "per_face"):
                r = streams[mode][n]
                print(
                    f"{n:>7}  {mode:<9}  {r['fps_per_stream']:10.1f}  {r['p95_ms_worst_stream']:14.1f}"
                    f"  {r['faces_per_s']:7.1f}"
                )
            ratio = streams["batched"][n]["faces_per_s"] / max(streams["per_face"][n]["faces_per_s"], 1e-9)
            print(f"{n:>7}  batched / per-face faces/s: {ratio:.2f}")
        print(f"batched executor, faces per model call -> calls: {streams['batch_sizes']}")
    if args.browser:
        figures["browser"] = browser = bench_browser(args.samples)
        print(f"browser glass-to-glass: p50 {browser['p50_ms']:.0f} ms, p95 {browser['p95_ms']:.0f} ms")
    if args.ray:
        figures["ray"] = ray = bench_ray(args.ray_calls)
        print(
            f"ray serve: in-process p50 {ray['in_process_p50_ms']:.2f} ms, ray p50 {ray['ray_p50_ms']:.2f} ms "
            f"(added {ray['added_p50_ms']:.2f} ms), ray p95 {ray['ray_p95_ms']:.2f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
