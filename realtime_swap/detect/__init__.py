"""Faces found, tracked and steadied: one module per job, imported from where they live.

* ``blazeface``  BlazeFaceDetector: boxes, scores, 6 key points (MediaPipe BlazeFace, ONNX).
* ``facemesh``   FaceMeshLandmarker: 468 landmarks in a rotated ROI (MediaPipe FaceMesh, ONNX).
* ``mesh``       FaceMesh topology: contours, 68-point and 5-point (ArcFace) correspondences.
* ``smoothing``  OneEuroFilter for landmarks.
* ``tracker``    FaceTracker: detect every N frames, follow with FaceMesh in between, ids, selection.
* ``stage``      DetectStage (pipeline) and FaceAnalyzer / analyze_image (single images).

This package's ``__init__`` imports nothing on purpose: ``realtime_swap.align`` uses ``detect.mesh``, and
``detect.stage`` uses ``align``, so eager re-exports here would make an import cycle.
"""
