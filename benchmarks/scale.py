"""A million-image index made from real codes, for the scale figures.

Start: the 70,000 Fashion-MNIST images (train and test), indexed for real (codes and
full features). Every further image is a real one's features, centred, plus Gaussian
noise shaped like the collection's own spread, scaled so that its cosine to the source
is drawn between 0.55 and 0.85 (a new picture of the same kind, about as close as real
nearest neighbours are: their median is 0.81). One image in a hundred is instead a
*planted near-duplicate*: a copy of an earlier image at cosine 0.96-0.995. Codes are the
features through the encoder's own projection, as for real images.

Written with the public storage API (``open_store``, ``Batch``), band keys and centre from
the engine, so the index is exactly what ``lookalike index`` would have written.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.data import DATA, REPO, sized

SOURCE = DATA / "fashion-all"
#: Fashion-MNIST's images in the source (all 70,000; 2,000 in a smoke run)
SOURCE_N = sized(70_000, 2_000)
#: the large index sizes of the scale benchmarks
MID, BIG = sized(100_000, 5_000), sized(1_000_000, 20_000)


def ensure_source() -> Path:
    """Fashion-MNIST's 70,000 images, indexed (about 4-6 minutes the first time)."""
    from engine import ImageSimilaritySearch
    from engine.fashion import export

    if len(list(SOURCE.glob("*/*.png"))) < SOURCE_N:
        print(f"writing {SOURCE_N:,} Fashion-MNIST images as PNG…", flush=True)
        export(SOURCE, ("train", "test"), sized(None, SOURCE_N // 20))
    with ImageSimilaritySearch(SOURCE) as search:
        if search.count() < SOURCE_N:
            print("indexing them…", flush=True)
            search.index()
    return SOURCE


def build(n: int, dest: Path, seed: int = 0, chunk: int = 50_000) -> dict:
    """Write an index of *n* images at *dest* (``.../index.sqlite``); returns what was
    planted: ``{"pairs": (copy_slot, source_slot) array}``."""
    from engine import ImageSimilaritySearch, open_store
    from engine.encoding.torch_cnn import orthogonal_projection
    from engine.storage import Batch, remove_index

    ensure_source()
    src = ImageSimilaritySearch(SOURCE)
    vec = src.vectors()
    meta = dict(vec.snap.meta)
    live = np.flatnonzero(vec.live)
    feats = np.asarray(vec.snap.features[live], np.float32)
    fmean = vec.centre.features
    centred = feats - fmean
    spread = centred.std(axis=0)
    proj = orthogonal_projection(feats.shape[1], meta["hash_dim"])
    rng = np.random.RandomState(seed)
    facts = src.store.image_facts()
    src_hash = facts.dhash[np.searchsorted(facts.slots, live)]

    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_index(str(dest))
    store = open_store(str(dest))
    keep = (
        "backbone", "weights_id", "hash_dim", "input_size", "hash_layer", "precision",
        "num_perm", "seed", "scheme", "bands", "rows", "feature_dim",
    )  # fmt: skip
    store.set_meta({**{k: meta[k] for k in keep}, "slots": 0, **vec.centre.to_meta()})
    root = Path(tempfile.mkdtemp(prefix="lookalike-scale-"))
    writer = ImageSimilaritySearch(root, dest)
    planted = []
    written = 0
    started = time.perf_counter()
    with store.writer():
        while written < n:
            m = min(chunk, n - written)
            if written == 0:  # the real images first
                m = min(n, len(feats))
                block = feats[:m]
                hashes = src_hash[:m]
            else:
                source = rng.randint(0, len(feats), m)
                base = centred[source]
                target = rng.uniform(0.55, 0.85, m)
                dup = rng.rand(m) < 0.01
                target[dup] = rng.uniform(0.96, 0.995, dup.sum())
                noise = rng.standard_normal(base.shape).astype(np.float32) * spread
                noise -= (
                    (noise * base).sum(1, keepdims=True)
                    / (base * base).sum(1, keepdims=True)
                    * base
                )  # orthogonal to the source, so the cosine is the target
                scale = np.linalg.norm(base, axis=1) * np.sqrt(1 / target**2 - 1)
                scale /= np.linalg.norm(noise, axis=1)
                block = base + noise * scale[:, None] + fmean
                planted.append(np.stack([written + np.flatnonzero(dup), source[dup]], axis=1))
                # layout hashes: a new picture of the same kind differs in 16-32 of 64
                # bits from its source, a planted near-duplicate in 0-6
                flips = np.where(dup, rng.randint(0, 7, m), rng.randint(16, 33, m))
                hashes = _flip(src_hash[source], flips, rng)
            codes = (block @ proj.T).astype(np.float32)
            store.commit(
                Batch(
                    paths=[f"synthetic/{written + i:07d}.png" for i in range(m)],
                    sizes=[0] * m,
                    mtimes=[0] * m,
                    digests=[None] * m,
                    dhashes=[int(h) for h in hashes.view(np.int64)],
                    pixels=[784] * m,
                    codes=codes,
                    features=block.astype(np.float16),
                    band_keys=writer.view.band_keys(codes),
                )
            )
            written += m
            print(f"\r{written:,} images written", end="", flush=True)
        store.build_lsh_tables()
    print(f" in {time.perf_counter() - started:.0f} s", flush=True)
    store.close()
    writer.close()
    src.close()
    os.rmdir(root)
    pairs = np.concatenate(planted) if planted else np.zeros((0, 2), np.int64)
    np.save(str(dest) + ".planted.npy", pairs)
    return {"pairs": pairs}


def _flip(hashes: np.ndarray, counts: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Each 64-bit hash with *counts* of its bits flipped at random places."""
    ranks = rng.rand(len(hashes), 64).argsort(axis=1)
    bits = ranks < counts[:, None]
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    masks = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return hashes.astype(np.uint64) ^ masks


def index_path(n: int) -> Path:
    return DATA / f"scale-{n}" / "index.sqlite"


def ensure(n: int) -> Path:
    path = index_path(n)
    if not Path(str(path) + ".planted.npy").exists():
        build(n, path)
    return path


__all__ = ["BIG", "MID", "REPO", "SOURCE_N", "build", "ensure", "ensure_source", "index_path"]
