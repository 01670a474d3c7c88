"""Inference: overlap-tile prediction (`tiling`), the `Predictor` of an image (`predictor`), the files `unetlab
predict` writes (`outputs`), and export to ONNX and TorchScript (`export`)."""
