"""The original script's way of indexing, kept as the baseline the engine is measured against.

One image at a time: open with Pillow, resize, normalise, a plain fp32 eager forward pass
(contiguous NCHW, ``torch.no_grad``), the same hash layer, then a datasketch MinHash fed
one token at a time with ``MinHash.update`` and inserted into a ``MinHashLSH``. Same
backbone, same weights, same tokens as the engine: only the way of running differs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from datasketch import MinHashLSH
from PIL import Image

from engine.encoding.torch_cnn import DeepImageEncoder
from engine.minhash import minhash_reference


class SeedPipeline:
    def __init__(self, backbone: str, weights: str | None = None, hash_dim: int = 128) -> None:
        self.encoder = DeepImageEncoder(
            hash_dim, backbone, weights=weights, device="cpu", precision="fp32", runtime="torch"
        )
        self.encoder.features.to(memory_format=torch.contiguous_format)
        norm = self.encoder.normalisation
        self.mean = torch.tensor(norm.mean).view(3, 1, 1)
        self.std = torch.tensor(norm.std).view(3, 1, 1)

    def encode(self, path: Path) -> np.ndarray:
        im = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255.0)
        x = ((x - self.mean) / self.std).unsqueeze(0)
        with torch.no_grad():
            return self.encoder.hash_layer(self.encoder.features(x))[0].numpy()

    def index(self, paths: list[Path]) -> float:
        """Index *paths*; returns seconds taken."""
        t0 = time.perf_counter()
        lsh = MinHashLSH(num_perm=128, params=(32, 4))
        for i, path in enumerate(paths):
            code = self.encode(path)
            lsh.insert(i, minhash_reference(code))
        return time.perf_counter() - t0
