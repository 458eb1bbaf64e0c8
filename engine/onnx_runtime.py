"""Run an encoder with ONNX Runtime on the CPU: the same features, often much faster.

PyTorch's eager CPU kernels for EfficientNet's depthwise convolutions are slow; ONNX
Runtime fuses them. The path from uint8 pixels to pooled features (normalisation and
backbone) is exported once per backbone and weights digest, cached under the user's
cache folder, and reloaded on later runs. The hash layer is applied afterwards in numpy,
the same way for every runtime. Export writes to a temporary file and renames it, so a
killed export never leaves a broken model behind. The features match PyTorch's to about
1e-6 (tested), so an index built by either runtime serves the other.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.paths import onnx_cache_dir

#: Bump when the exported graph changes meaning (2: pooled features, not codes).
EXPORT_VERSION = 2


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    return onnx_cache_dir()


class _PixelsToFeatures(nn.Module):
    """uint8 (N, H, W, 3) pixels to pooled features, in one graph."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        return enc.features(enc.normalise(pixels))


def export(module: nn.Module, input_size: int, path: Path, output: str = "features") -> None:
    """Export *module* (uint8 (N, S, S, 3) pixels in, one tensor out) to *path* atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((2, input_size, input_size, 3), dtype=torch.uint8)
    module = module.eval().cpu()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["pixels"],
                output_names=[output],
                dynamic_axes={"pixels": {0: "batch"}, output: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OnnxFeatures:
    """Callable: uint8 (N, H, W, 3) pixels to float32 pooled features, with ONNX Runtime."""

    def __init__(self, encoder, threads: int | None = None) -> None:
        import onnxruntime as ort

        name = (
            f"{encoder.backbone_name}-{encoder.weights_id}"
            f"-{encoder.input_size}-e{EXPORT_VERSION}.onnx"
        )
        self.path = cache_dir() / name
        if not self.path.is_file():
            export(_PixelsToFeatures(encoder), encoder.input_size, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, np.uint8)})[0]
