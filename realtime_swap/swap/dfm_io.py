"""DeepFaceLive's DFM tensor layout: the names every swap model file is read (``swap.model``), written
(``export.onnx_export``, ``swap.synthetic``) and profiled (``realtime_swap.infer.tensorrt_build``) with.

* input ``in_face:0`` (N, S, S, 3) float32 BGR in [0, 1]; optional input ``morph_value:0`` (1,) float32;
* outputs, in this order (DeepFaceLive unpacks them by position): ``out_face_mask:0`` (N, S, S, 1),
  ``out_celeb_face:0`` (N, S, S, 3), ``out_celeb_face_mask:0`` (N, S, S, 1), float32 in [0, 1].
"""

from __future__ import annotations

DFM_INPUT = "in_face:0"
DFM_MORPH = "morph_value:0"
OUT_FACE_MASK = "out_face_mask:0"
OUT_CELEB_FACE = "out_celeb_face:0"
OUT_CELEB_MASK = "out_celeb_face_mask:0"
DFM_OUTPUTS = (OUT_FACE_MASK, OUT_CELEB_FACE, OUT_CELEB_MASK)

PRODUCER = "realtime_swap"
"""``metadata_props["producer"]`` (and the ONNX producer name) of the product's own exports."""
