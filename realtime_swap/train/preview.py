"""Training artefacts a person looks at: preview grids, the loss log (CSV) and its plot (PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

PREVIEW_COLUMNS = ("src", "src->src", "dst", "dst->dst", "swap", "mask")
LOSS_FIELDS = ("iteration", "src_loss", "dst_loss", "gan_g", "gan_d", "elapsed_s")


def _to_u8(images: np.ndarray) -> np.ndarray:
    """(N, C, S, S) float [0, 1] (C = 1 or 3) -> (N, S, S, 3) uint8 BGR."""
    out = np.clip(np.rint(images.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def preview_grid(columns: list[np.ndarray], labels: tuple[str, ...] = PREVIEW_COLUMNS) -> np.ndarray:
    """One row per sample, one column per image set, with a label strip on top.

    columns: each (N, C, S, S) float32 [0, 1], C = 3 (BGR) or 1 (mask). Returns (H, W, 3) uint8 BGR.
    """
    tiles = [_to_u8(c) for c in columns]
    n, s = tiles[0].shape[0], tiles[0].shape[1]
    body = np.concatenate([np.concatenate([t[i] for t in tiles], axis=1) for i in range(n)], axis=0)
    header_h = max(14, s // 8)
    header = np.full((header_h, body.shape[1], 3), 32, np.uint8)
    scale = header_h / 30.0
    for j, label in enumerate(labels[: len(tiles)]):
        cv2.putText(
            header, label, (j * s + 3, header_h - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1, cv2.LINE_AA
        )
    return np.concatenate([header, body], axis=0)


class LossLog:
    """Appends rows of LOSS_FIELDS to a CSV file; ``truncate_after`` drops rows past a resumed iteration."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(LOSS_FIELDS)

    def truncate_after(self, iteration: int) -> None:
        rows = self.read()
        with self.path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(LOSS_FIELDS)
            for row in rows:
                if row["iteration"] <= iteration:
                    writer.writerow([_fmt(row[f]) for f in LOSS_FIELDS])

    def append(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(f, float("nan"))) for f in LOSS_FIELDS])

    def read(self) -> list[dict[str, float]]:
        with self.path.open(newline="") as fh:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def plot_losses(rows: list[dict[str, float]], out: str | Path) -> None:
    """Write a PNG of src/dst loss against iteration (log scale); uses matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    try:
        its = [r["iteration"] for r in rows]
        for key, colour in (("src_loss", "tab:blue"), ("dst_loss", "tab:orange")):
            ax.plot(its, [r[key] for r in rows], label=key, color=colour, linewidth=1)
        if rows and all(v > 0 for r in rows for v in (r["src_loss"], r["dst_loss"])):
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(str(out))
    finally:
        plt.close(fig)
