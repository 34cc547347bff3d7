"""Swap models (the product's ONNX exports and DeepFaceLive DFM files) on every backend, and the swap stage."""

from realtime_swap.swap.backends import AUTO_ORDER, BackendOptions, unavailable_reason
from realtime_swap.swap.model import DEFAULT_MORPH, FaceMask, ModelFormat, ModelSpec, SwapModel
from realtime_swap.swap.stage import SwapStage

__all__ = [
    "AUTO_ORDER",
    "DEFAULT_MORPH",
    "BackendOptions",
    "FaceMask",
    "ModelFormat",
    "ModelSpec",
    "SwapModel",
    "SwapStage",
    "unavailable_reason",
]
