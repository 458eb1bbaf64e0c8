"""The centre: the collection's mean, subtracted before any cosine or sign is taken.

CNN features are non-negative, so every image's vector leans the same way and cosine
between raw features is high for everything; their signs, which the MinHash tokens are
made of, carry little. Subtracting the collection's mean fixes both (measured: the LSH
stage needs half as many candidates for the same recall, and precision@10 on a varied
set rises from 0.543 to 0.553 on full features).

The mean is of the backbone's pooled features when the index stores them (the code
centre is then their projection, the same linear map as the codes), else of the codes.
It is fitted on the first batch and refitted, with every band key recomputed from the
stored codes (no CNN), each time the collection has doubled, until
:data:`REFIT_CAP` images: by then the mean has settled, and scores stop moving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Stop refitting past this many images.
REFIT_CAP = 200_000


@dataclass(frozen=True)
class Centre:
    codes: np.ndarray  # (hash_dim,) float32
    features: np.ndarray | None  # (feature_dim,) float32, or None without features
    count: int  # images it was fitted on
    generation: int  # bumped at every fit

    def to_meta(self) -> dict:
        return {
            "centre": self.codes.tolist(),
            "centre_features": None if self.features is None else self.features.tolist(),
            "centre_count": self.count,
            "centre_gen": self.generation,
        }

    def due(self, usable: int) -> bool:
        """Whether a collection of *usable* images calls for a refit."""
        return self.count < REFIT_CAP and usable >= 2 * self.count


def fit(
    codes: np.ndarray, features: np.ndarray | None, projection: np.ndarray | None, generation: int
) -> Centre:
    """The centre of these images. With features and the encoder's *projection*
    (hash_dim, feature_dim), the code centre is the projected feature mean."""
    if features is not None and projection is not None:
        fmean = np.asarray(features, np.float64).mean(axis=0)
        cmean = projection.astype(np.float64) @ fmean
        return Centre(cmean.astype(np.float32), fmean.astype(np.float32), len(codes), generation)
    cmean = np.asarray(codes, np.float64).mean(axis=0)
    return Centre(cmean.astype(np.float32), None, len(codes), generation)


def from_meta(meta: dict) -> Centre | None:
    """The stored centre (already checked by the search layer), or None."""
    if meta.get("centre") is None:
        return None
    feats = meta.get("centre_features")
    return Centre(
        np.asarray(meta["centre"], np.float32),
        None if feats is None else np.asarray(feats, np.float32),
        int(meta.get("centre_count", 0)),
        int(meta.get("centre_gen", 0)),
    )
