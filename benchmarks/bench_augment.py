"""Training augmentation throughput: the numpy/OpenCV path (``data.make_batch``) against the torch path
(``augment_torch.make_device_batch``) on the CPU, and on CUDA when present; batch pairs (src + dst) per second.

    nice -n 10 python benchmarks/bench_augment.py [--resolution 128] [--batch 16] [--pairs 20] [--threads 1]

Real packaged faces, the trainer's default augmentation (random warp, colour transfer 0.5 on src, no flip).
One warm-up pair, then ``--pairs`` timed pairs; the median of ``--repeats`` runs, and the ratio in the same run.
On a shared machine the load average is printed: the figures move with other processes' load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime_swap.train.augment_torch import DeviceAugmenter
from realtime_swap.train.data import AugmentSettings, TrainingSet, iteration_rng, make_batch
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.sample_faces import write_packaged_faceset


def pairs_per_s(make_pair: Callable[[int], object], pairs: int, repeats: int, sync: Callable[[], None]) -> float:
    make_pair(0)
    sync()
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(pairs):
            make_pair(1 + r * pairs + i)
        sync()
        rates.append(pairs / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=20, help="timed batch pairs per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one core, as numpy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res, batch = args.resolution, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = TrainingSet.from_faceset(Faceset.load(write_packaged_faceset(root / "s", ["astronaut"], 8, res, 1)), res)
        dst = TrainingSet.from_faceset(Faceset.load(write_packaged_faceset(root / "d", ["t1_c"], 8, res, 2)), res)
    settings = AugmentSettings(random_warp=True, flip=False, color_transfer=0.5)

    def numpy_pair(i: int) -> object:
        return (
            make_batch(iteration_rng(0, i, 0), src, batch, settings, dst),
            make_batch(iteration_rng(0, i, 1), dst, batch, settings),
        )

    print(f"augmentation, {res} px, batch {batch}, {args.pairs} pairs x {args.repeats}, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'path':<28} {'pairs/s':>8} {'ms/pair':>8} {'vs numpy':>9}")
    base = pairs_per_s(numpy_pair, args.pairs, args.repeats, lambda: None)
    print(f"{'numpy/OpenCV (1 core)':<28} {base:8.2f} {1000 / base:8.1f} {1.0:9.2f}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        augmenter = DeviceAugmenter(src, dst, batch, settings, 0, device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        rate = pairs_per_s(augmenter.get, args.pairs, args.repeats, sync)
        print(f"{'torch ' + device.type:<28} {rate:8.2f} {1000 / rate:8.1f} {rate / base:9.2f}")


if __name__ == "__main__":
    main()
