"""What makes two codes comparable, and how an index and the asked settings agree on it.

An index records its *identity* when its first batch is written: the backbone and its
weights, the code width, the MinHash permutations, seed and scheme, the LSH banding, the
CNN's input size and precision. Codes made under another identity are not comparable, so
every later run is reconciled with it: a setting left on ``auto`` takes the index's
value, one asked for explicitly and different is refused with the command that rebuilds.
Every stored value is checked for type and range before anything is sized by it (a
crafted ``hash_dim`` of 1e9 must not allocate terabytes).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import IndexMismatch
from engine.names import printable
from engine.settings import (
    DEFAULT_HASH_DIM,
    DEFAULT_NUM_PERM,
    DEFAULT_SEED,
    HASH_DIM_RANGE,
    INPUT_SIZE,
    INPUT_SIZES,
    NUM_PERM_RANGE,
    Settings,
    bands_for,
)

#: datasketch's permutation scheme for the signatures (engine.minhash.SCHEME, which a
#: test checks; not imported here: datasketch costs 0.3 s to import). datasketch does
#: not record it, so the index does, and another scheme is refused on attaching.
MINHASH_SCHEME = "affine32"


@dataclass(frozen=True)
class Identity:
    """The settings an index's codes and band keys were made with."""

    backbone: str
    hash_dim: int
    num_perm: int
    seed: int
    precision: str  # "auto" until the encoder has chosen, for a new index
    bands: int
    rows: int
    input_size: int
    #: for bf16 codes, the runtime that made them (OpenVINO's and PyTorch's bf16 features
    #: differ by up to 0.025 in cosine): an index is extended only by that runtime
    runtime: str | None = None

    def band_keys(self, codes: np.ndarray, centre_codes: np.ndarray) -> np.ndarray:
        """LSH band keys of *codes* around *centre_codes* (:func:`engine.minhash.band_keys`,
        imported on first use: datasketch costs 0.3 s, which a search that never tries
        LSH should not pay)."""
        from engine.minhash import band_keys

        return band_keys(codes, centre_codes, self.num_perm, self.seed, self.bands, self.rows)


def reconcile(settings: Settings, meta: dict, location: str, root: Path) -> Identity:
    """The identity to work with: the index's own (*meta*, checked) where it has one,
    with any explicitly asked setting that differs refused; else the asked settings with
    the defaults filled in."""
    from engine.encoding.backbones import resolve_backbone

    asked_backbone = (
        None
        if settings.backbone == "auto" and settings.weights is None
        else resolve_backbone(settings.backbone, settings.weights)
    )
    if "backbone" not in meta:
        num_perm = settings.num_perm or DEFAULT_NUM_PERM
        bands, rows = bands_for(num_perm)
        return Identity(
            backbone=asked_backbone or resolve_backbone("auto", settings.weights),
            hash_dim=settings.hash_dim or DEFAULT_HASH_DIM,
            num_perm=num_perm,
            seed=DEFAULT_SEED if settings.seed is None else settings.seed,
            precision=settings.precision,
            bands=bands,
            rows=rows,
            input_size=settings.input_size or INPUT_SIZE,
        )
    asked = {
        "backbone": asked_backbone,
        "hash_dim": settings.hash_dim,
        "num_perm": settings.num_perm,
        "seed": settings.seed,
        "precision": None if settings.precision == "auto" else settings.precision,
        "input_size": settings.input_size,
    }
    clashes = [
        f"{k} {meta.get(k)} (asked {v})"
        for k, v in asked.items()
        if v is not None and v != meta.get(k)
    ]
    if clashes:
        raise IndexMismatch(
            f"the index at {location} was built with "
            + ", ".join(clashes)
            + f": run lookalike index {root} --rebuild to re-index with the new settings"
        )
    return Identity(
        meta["backbone"],
        meta["hash_dim"],
        meta["num_perm"],
        meta["seed"],
        meta["precision"],
        meta["bands"],
        meta["rows"],
        meta["input_size"],
        meta.get("bf16_runtime"),
    )


def check_encoder(meta: dict, encoder, location: str, root: Path) -> None:
    """Refuse an encoder whose codes would not be comparable with the stored ones."""
    ident = encoder.identity
    if (
        meta.get("weights_id") not in (None, ident["weights_id"])
        or meta.get("hash_layer", ident["hash_layer"]) != ident["hash_layer"]
    ):
        raise IndexMismatch(
            f"the index at {location} was built with other {meta.get('backbone')}"
            f" weights: run lookalike index {root} --rebuild to re-index with these"
        )
    for key in ("backbone", "hash_dim", "precision", "bf16_runtime"):
        if key in meta and meta[key] != ident.get(key):
            raise IndexMismatch(
                f"the index at {location} was built with {key} {meta[key]}"
                f" (this encoder: {ident[key]}): run lookalike index {root} --rebuild"
                " to re-index"
            )


def record(store, identity: Identity, encoder, feature_dim: int, root: Path) -> None:
    """Record the encoder's and the LSH's settings in a new index. On a store several
    processes write, the first one's identity holds, and a process that would write
    other codes is refused, as on attaching."""
    if "backbone" in store.get_meta():
        return
    if not store.keep_features:
        feature_dim = 0  # codes only, no re-ranking: the store was asked to be small
    values = {
        **encoder.identity,
        "num_perm": identity.num_perm,
        "seed": identity.seed,
        "scheme": MINHASH_SCHEME,
        "bands": identity.bands,
        "rows": identity.rows,
        "feature_dim": feature_dim,
        "input_size": identity.input_size,
        "slots": 0,
    }
    meta = store.claim_meta(values)
    clashes = [
        f"{k} {meta.get(k)} (this worker: {v})"
        for k, v in values.items()
        if k != "slots" and meta.get(k) != v
    ]
    if clashes:
        raise IndexMismatch(f"the index at {store.location} was built with " + ", ".join(clashes))
    # where the index was first built from (host and folder), for messages
    where = os.fsencode(root).decode("utf-8", "replace")
    store.claim_meta({"folder": f"{socket.gethostname()}:{where}"})


def checked_meta(store, meta: dict | None = None) -> dict:
    """The index's metadata (*meta*, or the store's), every value checked for type and
    range; a damaged one raises the store's damaged-index error."""
    from engine.encoding.backbones import BACKBONES

    meta = store.get_meta() if meta is None else meta
    if "backbone" not in meta:
        return meta

    def whole(key: str, lo: int, hi: int) -> None:
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise store.damaged(
                f"{key} {printable(repr(v)[:40])} is not a whole number in {lo}..{hi}"
            )

    if meta.get("scheme", MINHASH_SCHEME) != MINHASH_SCHEME:
        raise IndexMismatch(
            f"the index at {store.location} hashes with MinHash scheme"
            f" {printable(repr(meta.get('scheme'))[:40])}, not {MINHASH_SCHEME}:"
            " run lookalike index DIR --rebuild"
        )
    if meta["backbone"] not in BACKBONES:
        raise store.damaged(f"unknown backbone {printable(repr(meta['backbone'])[:40])}")
    whole("hash_dim", *HASH_DIM_RANGE)
    whole("num_perm", *NUM_PERM_RANGE)
    whole("seed", 0, 2**32 - 1)
    whole("feature_dim", 0, 8192)
    whole("bands", 2, meta["num_perm"])
    whole("rows", 1, meta["num_perm"] // meta["bands"])
    if meta.get("input_size") not in INPUT_SIZES:
        raise store.damaged(
            f"input size {printable(repr(meta.get('input_size'))[:20])} is not one lookalike uses"
        )
    if "centre_count" in meta:
        whole("centre_count", 0, 2**62)
    if meta.get("precision") not in ("fp32", "bf16", "int8"):
        raise store.damaged(f"unknown precision {printable(repr(meta.get('precision'))[:40])}")
    if meta.get("bf16_runtime", "torch") not in ("torch", "openvino"):
        raise store.damaged("the runtime of its bf16 codes is not one lookalike uses")
    if not isinstance(meta.get("weights_id"), (str, type(None))):
        raise store.damaged("weights_id is not text")
    for key, size in (("centre", meta["hash_dim"]), ("centre_features", meta["feature_dim"])):
        value = meta.get(key)
        if value is None:
            continue
        what = key.replace("_", " ")
        if not isinstance(value, list) or len(value) != size:
            raise store.damaged(f"the {what} does not have {size} values")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise store.damaged(f"the {what} holds values that are not numbers")
        if not np.isfinite(np.asarray(value, np.float64)).all():
            raise store.damaged(f"the {what} holds values that are not finite")
    return meta
