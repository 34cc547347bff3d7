#!/usr/bin/env bash
# Rebuild trained_models/demo_swap/demo_swap.onnx from scratch on the CPU: facesets, training, export, figures.
# Usage: bash trained_models/demo_swap/reproduce.sh [WORK_DIR]   (default /tmp/demo_swap_work; run from the repo root)
set -euo pipefail
WORK=${1:-/tmp/demo_swap_work}
ITERATIONS=${ITERATIONS:-3331}  # what the shipped model was trained for
cd "$(dirname "$0")/../.."

python trained_models/demo_swap/make_facesets.py --out "$WORK/data" --renders 360 --seed 0 \
    --demo-frames trained_models/demo_swap/demo_frames.json
python -m realtime_swap train --src "$WORK/data/celeb" --dst "$WORK/data/astronaut" --out "$WORK/train" \
    --preset tiny --resolution 96 --e-dims 16 --ae-dims 96 --d-dims 16 --d-mask-dims 8 \
    --batch 8 --lr 3e-4 --iterations "$ITERATIONS" --threads 2 --preview-every 250 --save-every 250 \
    --device cpu --seed 0
python -m realtime_swap export "$WORK/train" --out trained_models/demo_swap/demo_swap.onnx --check-parity
python benchmarks/bench_demo_model.py --checkpoint "$WORK/train"
