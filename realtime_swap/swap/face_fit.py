"""Does the swap model know this face? A once-per-model hint for a model run on a person it was not trained for.

A DF/LIAE model only knows the dst faces it was trained on (the shipped demo model: the demo face). On anyone
else its learned mask no longer follows the face and the swap is a smeared patch, with nothing to tell the user
why. The hint: the overlap (IoU of the parts above 0.5) between the model's mask and the landmark hull of the
face. Measured with the demo model (96 px, whole face): 0.89-0.92 on the demo face, 0.10-0.66 on the faces of
insightface's ``t1.jpg`` it never saw (one of six scored 0.97: a hint, not a verdict), so the median over the
first ``FIT_SAMPLES`` faces is compared with ``FIT_MIN_OVERLAP``.
"""

from __future__ import annotations

import statistics

import numpy as np

FIT_SAMPLES = 10
FIT_MIN_OVERLAP = 0.6


def mask_overlap(learned: np.ndarray, landmark: np.ndarray) -> float:
    """IoU of ``learned > 0.5`` and ``landmark > 0.5``, two (S, S) float [0, 1] masks; 0 when both are empty."""
    a, b = learned > 0.5, landmark > 0.5
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


class FaceFitCheck:
    """Collects the mask overlap of each model's first ``FIT_SAMPLES`` faces and, once per model, returns the
    message to show when their median is below ``FIT_MIN_OVERLAP``."""

    def __init__(self) -> None:
        self._overlaps: dict[str, list[float]] = {}
        self._judged: set[str] = set()

    def observe(
        self, model_name: str, trained_for: str | None, learned: np.ndarray, landmark: np.ndarray
    ) -> str | None:
        """Record one face of ``model_name`` (``trained_for``: its dst faceset from the metadata, if named)."""
        if model_name in self._judged:
            return None
        samples = self._overlaps.setdefault(model_name, [])
        samples.append(mask_overlap(learned, landmark))
        if len(samples) < FIT_SAMPLES:
            return None
        self._judged.add(model_name)
        median = statistics.median(samples)
        if median >= FIT_MIN_OVERLAP:
            return None
        whose = f"the faces in {trained_for}" if trained_for else "another person's face"
        return (
            f"swap model {model_name} does not seem to know this face: its mask covers {median:.0%} of the face "
            f"(median of {len(samples)}; ~90 % on faces it was trained for). It was trained for {whose}; on anyone "
            "else it paints a smeared mask. Make a model of this face with `realtime-swap make-model` (README: "
            "Swap your own face)."
        )
