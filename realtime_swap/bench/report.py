"""What the figures were measured on, and the terminal tables of a measurement and of a comparison."""

from __future__ import annotations

import enum
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realtime_swap.infer.session import usable_cores


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import onnxruntime as ort

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def plain(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def _p(d: dict[str, float] | None) -> str:
    if not d:
        return f"{'-':>8}{'-':>8}{'-':>8}"
    return f"{d['p50']:8.2f}{d['p95']:8.2f}{d['p99']:8.2f}"


def format_result(r: dict[str, Any]) -> str:
    """The human-readable table of one :func:`measure` result."""
    pipe, seq, inf = r["pipelined"], r["sequential"], r["inference_ms"]
    gpu = f", gpu path on {r['gpu_path']}" if r["gpu_path"] != "off" else ""
    lines = [
        f"== {r['resolution']} ({r['width']}x{r['height']}), {r['faces']} face(s), model: {r['model']['description']}, "
        f"backend {inf['backend']} ({inf['device']}){gpu}"
        + (f", paced at {r['paced_fps']:g} fps" if r["paced_fps"] else ", unpaced"),
        f"   set-up: session {r['session_create_s']:.2f} s, engine build {r['engine_build_s']:.2f} s, "
        f"stage warm-up {r['warmup_s']:.2f} s; {r['warmup_frames']} warm-up frames left out, "
        f"{r['frames']} measured x {r['rounds']} round(s); the demo source alone renders "
        f"{r['demo_render_fps']:.0f} fps unpaced",
        f"   inference alone (batch {inf['batch']}, {inf['clock']}): p50 {inf['p50']:.2f}  p95 {inf['p95']:.2f}  "
        f"p99 {inf['p99']:.2f} ms",
        f"   {'stage ms':<14}{'pipelined p50/p95/p99':>24}{'sequential p50/p95/p99':>26}",
    ]
    names = list(pipe["stages"]) + [n for n in (seq["stages"] if seq else {}) if n not in pipe["stages"]]
    for name in names:
        lines.append(f"   {name:<14}{_p(pipe['stages'].get(name))}  {_p(seq['stages'].get(name) if seq else None)}")
    lines.append(f"   {'latency':<14}{_p(pipe['latency_ms'])}  {_p(seq['latency_ms'] if seq else None)}")
    fps_line = f"   fps: pipelined {pipe['fps']:.1f}"
    if seq:
        ratio = r["pipelined_vs_sequential"]
        fps_line += (
            f", sequential {seq['fps']:.1f} (one thread, model on {r['sequential_cpu_threads']} intra-op "
            f"thread(s)); pipelined / sequential {ratio['median']:.2f}x "
            f"(min {ratio['min']:.2f}, max {ratio['max']:.2f} over {len(ratio['rounds'])} round(s))"
        )
    lines.append(fps_line)
    cpu_line = f"   CPU: pipelined {pipe['cpu_cores_busy']:.2f} cores busy, {pipe['cpu_ms_per_frame']:.1f} ms per frame"
    if seq:
        cpu_line += f"; sequential {seq['cpu_cores_busy']:.2f} cores, {seq['cpu_ms_per_frame']:.1f} ms per frame"
    lines.append(cpu_line + f" (of {usable_cores()} usable cores)")
    lines.append(
        f"   frames: {pipe['frames_captured']} captured, {pipe['frames_output']} output, "
        f"{pipe['frames_dropped']} dropped, {pipe['frames_swapped']} of {pipe['frames_measured']} measured with a "
        "face swapped (pipelined)"
    )
    return "\n".join(lines)


def _values(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def format_compare(entry: dict[str, Any], args: Sequence[str]) -> str:
    """The human-readable lines of one :func:`compare` entry."""
    f, lat = entry["fps_ratio_b_over_a"], entry["latency_p50_ratio_b_over_a"]
    a, b = entry["a"], entry["b"]
    return "\n".join(
        [
            f"== compare at {entry['resolution']}: A = [{args[0]}], B = [{args[1]}], {entry['rounds']} round(s) A B",
            f"   fps A: {_values(a['fps_rounds'])};  B: {_values(b['fps_rounds'])}",
            f"   fps B / A: {f['median']:.2f}x (min {f['min']:.2f}, max {f['max']:.2f}); "
            f"latency p50 B / A: {lat['median']:.2f}x (min {lat['min']:.2f}, max {lat['max']:.2f})",
        ]
    )
