"""Pictures to codes: the CNN, how it runs on this machine, and one call to encode a batch.

* :mod:`engine.encoding.backbones` — which CNNs exist, where their weights are, an
  encoder's identity (what must match for two codes to be comparable);
* :mod:`engine.encoding.torch_cnn` — :class:`DeepImageEncoder`, the CNN in PyTorch (every
  path starts from it: the ONNX and OpenVINO models are exported from it);
* :mod:`engine.encoding.onnx_cnn` — the exported model run by ONNX Runtime, and the light
  encoder that answers a one-off query without importing torch;
* :mod:`engine.encoding.openvino_cnn` — the same model in OpenVINO, fp32, bf16 or int8;
* :mod:`engine.encoding.chooser` — which runtime and precision is fastest here, measured
  once per machine and remembered.

The rest of the engine calls :func:`build_encoder` and :func:`encode_batch` only.
"""

from __future__ import annotations

import numpy as np


def build_encoder(hash_dim: int, backbone: str, on_step=None, **options):
    """The encoder for these settings: ONNX Runtime without torch when that is what would
    run anyway (a second saved on every one-off query of a new picture), else
    :class:`~engine.encoding.torch_cnn.DeepImageEncoder`. *options*: ``weights``,
    ``device``, ``precision``, ``runtime``, ``input_size``; *on_step* hears of each way
    of running the CNN as it is timed (the first run on a machine:
    :data:`~engine.encoding.chooser.StepCallback`). Raises
    :class:`~engine.encoding.backbones.EncoderError` with a one-line message."""
    from engine.encoding.onnx_cnn import light_encoder

    enc = light_encoder(hash_dim, backbone, **options)
    if enc is not None:
        return enc
    from engine.encoding.torch_cnn import DeepImageEncoder

    return DeepImageEncoder(hash_dim, backbone, on_step=on_step, **options)


def encode_batch(encoder, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (float32) and pooled features of a batch of square pixels from any encoder:
    ``encode`` when it has one (codes and features), else ``encode_pixels`` (codes only,
    as the original script's encoders give)."""
    if hasattr(encoder, "encode"):
        codes, feats = encoder.encode(pixels)
        return np.asarray(codes, np.float32), feats
    return np.asarray(encoder.encode_pixels(pixels), np.float32), None


def feature_dim(encoder) -> int:
    """How many pooled features *encoder* gives with each code (0: codes only)."""
    return int(getattr(encoder, "feature_dim", 0)) if hasattr(encoder, "encode") else 0
