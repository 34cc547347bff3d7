"""Trainer and export figures: training iterations/s, ONNX Runtime CPU inference ms per face, model sizes.

    nice -n 10 python benchmarks/bench_train.py [--device cpu|cuda|auto] [--steps 5] [--threads N]

* training: DF, presets tiny and live at 64 and 128 px, each preset's batch size, on real packaged faces with
  the full augmentation; one warm-up step, then ``--steps`` timed optimisation steps (batch preparation excluded:
  the trainer prepares batches on a background thread);
* inference: each preset at its own resolution, DF and LIAE, exported to ONNX (fp32 and fp16) and run on ONNX
  Runtime's CPU provider at batch 1 (median of ``--runs``);
* sizes: parameters, training checkpoint weights (fp32), ONNX fp32 and fp16 files.

Untrained weights: the timings do not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.onnx_export import module_to_onnx, to_fp16
from realtime_swap.infer.session import Backend, create_ort_session
from realtime_swap.swap.dfm_io import DFM_INPUT
from realtime_swap.train.archs import build_model, count_parameters
from realtime_swap.train.config import PRESETS, Arch, Preset, TrainConfig, model_config_for
from realtime_swap.train.data import AugmentSettings, iteration_rng, make_batch
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.sample_faces import write_packaged_faceset
from realtime_swap.train.trainer import Trainer


def bench_training(device: str, steps: int, root: Path) -> None:
    print(f"\n## training steps/s (DF, device {device}, torch threads {torch.get_num_threads()})")
    print(f"{'preset':<8} {'res':>4} {'batch':>5} {'params':>8} {'ms/step':>9} {'it/s':>7} {'faces/s':>8}")
    for res in (64, 128):
        src = Faceset.load(write_packaged_faceset(root / f"src{res}", ["astronaut"], 4, res, seed=1))
        dst = Faceset.load(write_packaged_faceset(root / f"dst{res}", ["t1_c", "t1_d"], 2, res, seed=2))
        for preset in (Preset.TINY, Preset.LIVE):
            batch = PRESETS[preset].batch_size
            mc = model_config_for(Arch.DF, preset, res)
            config = TrainConfig(iterations=steps + 1, batch_size=batch, device=device, lr=PRESETS[preset].lr)
            trainer = Trainer(src, dst, root / f"run_{preset.value}_{res}", mc, config, progress=False)
            settings = AugmentSettings(True, False, 0.5)
            batches = [
                (
                    make_batch(iteration_rng(0, i, 0), trainer.src_data, batch, settings, trainer.dst_data),
                    make_batch(iteration_rng(0, i, 1), trainer.dst_data, batch, settings),
                )
                for i in range(steps + 1)
            ]
            trainer.step(0, *batches[0])
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(1, steps + 1):
                trainer.step(i, *batches[i])
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) / steps * 1000
            params = count_parameters(trainer.model) / 1e6
            faces = 2 * batch * 1000 / ms
            print(f"{preset.value:<8} {res:>4} {batch:>5} {params:>7.2f}M {ms:>9.1f} {1000 / ms:>7.2f} {faces:>8.1f}")


def bench_inference(runs: int, threads: int) -> None:
    print(f"\n## ONNX Runtime CPU inference, batch 1, {threads} thread(s); model sizes")
    print(
        f"{'preset':<8} {'arch':<5} {'res':>4} {'params':>8} {'ckpt MB':>8} {'onnx MB':>8} {'fp16 MB':>8} "
        f"{'fp32 ms':>8} {'fp16 ms':>8}"
    )
    rng = np.random.default_rng(0)
    for preset in Preset:
        for arch in Arch:
            mc = model_config_for(arch, preset)
            torch.manual_seed(0)
            model = build_model(mc).eval()
            params = count_parameters(model)
            fp32 = module_to_onnx(model)
            fp16 = to_fp16(fp32)
            face = rng.random((1, mc.resolution, mc.resolution, 3), dtype=np.float32)
            times = []
            for blob in (fp32, fp16):
                session = create_ort_session(blob, Backend.ORT_CPU, intra_op_threads=threads)
                session.run(None, {DFM_INPUT: face})  # type: ignore[attr-defined]
                samples = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    session.run(None, {DFM_INPUT: face})  # type: ignore[attr-defined]
                    samples.append((time.perf_counter() - t0) * 1000)
                times.append(statistics.median(samples))
            print(
                f"{preset.value:<8} {arch.value:<5} {mc.resolution:>4} {params / 1e6:>7.2f}M {params * 4 / 1e6:>8.1f} "
                f"{len(fp32) / 1e6:>8.1f} {len(fp16) / 1e6:>8.1f} {times[0]:>8.1f} {times[1]:>8.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="training device: cpu, cuda or auto (default cpu)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per configuration")
    parser.add_argument("--runs", type=int, default=10, help="timed inference runs per model")
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT CPU threads (default: torch's)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        if not args.skip_training:
            bench_training(args.device, args.steps, Path(tmp))
    if not args.skip_inference:
        bench_inference(args.runs, args.threads or torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
