"""Model sessions: one factory for every ONNX model the product runs (detector, landmarker, swap models)."""

from realtime_swap.infer.session import Backend, create_ort_session, ort_providers_for

__all__ = ["Backend", "create_ort_session", "ort_providers_for"]
