"""Deployment without qtransfer: a trained run as TorchScript, ONNX or OpenQASM with a sidecar JSON."""
