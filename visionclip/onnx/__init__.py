"""ONNX export of a VisionCLIP model (`export.py`, with torch) and the zero-shot runtime that runs it on ONNX
Runtime without torch (`runtime.py`, copied into every export as `visionclip_onnx.py`)."""
