"""Faster variants of a trained model: ONNX graphs (fp32 or int8), each recalibrated on its
own scores before it is registered (`triage export`)."""
