"""Model export and conversion: PyTorch → ONNX → TensorRT, third-party model conversion, parity checks."""
