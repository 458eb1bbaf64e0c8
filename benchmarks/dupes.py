"""A near-duplicate test set: real pictures, edited copies of some, distinct others.

From the varied clip-art set (:mod:`benchmarks.data`): every third picture gets one to
three edited copies, each with one or two of the edits people's collections are full of:
downscaled to 50-80 %, cropped by 2-5 % per side, re-encoded as JPEG at quality 40-70,
brightened or darkened by up to 10 %; one picture in ten gets a byte-identical copy too.
The other pictures, of the same classes, must not be grouped with anything. The truth is
the set of groups (an original and its copies).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.data import CLIPART, DATA, ensure_clipart
from engine.copies import turned

DUPES = DATA / "dupes"
EDITS = ("downscale", "crop", "jpeg", "brightness")


def edit(
    im: Image.Image, kinds: list[str], rng: np.random.RandomState
) -> tuple[Image.Image, str, dict]:
    """Apply *kinds* of edits; returns the image, the file format to save it in, and what
    was done."""
    done: dict = {}
    fmt = "PNG"
    for kind in kinds:
        if kind == "downscale":
            f = rng.uniform(0.5, 0.8)
            im = im.resize(
                (max(8, round(im.width * f)), max(8, round(im.height * f))), Image.LANCZOS
            )
            done[kind] = round(f, 2)
        elif kind == "crop":
            f = rng.uniform(0.02, 0.05)
            dx, dy = round(im.width * f), round(im.height * f)
            im = im.crop((dx, dy, im.width - dx, im.height - dy))
            done[kind] = round(f, 3)
        elif kind == "brightness":
            f = rng.uniform(0.9, 1.1)
            im = ImageEnhance.Brightness(im).enhance(f)
            done[kind] = round(f, 2)
        elif kind == "jpeg":
            q = int(rng.randint(40, 71))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=q)
            im = Image.open(io.BytesIO(buf.getvalue()))
            im.load()
            fmt = "JPEG"
            done[kind] = q
    return im, fmt, done


#: Bits in which a turned or mirrored version may differ from a picture kept: stricter
#: than as it is, since eight tries find a near hash for unrelated drawings on white.
TURNED_BITS = 6


def _apart(mine: np.ndarray, other: np.ndarray, min_bits: int) -> bool:
    """Whether hashes *mine* (the picture, then its turns) lie apart from *other*."""
    bits = (mine != other).sum(axis=1)
    return bool(bits[0] >= min_bits and (len(bits) == 1 or bits[1:].min() >= TURNED_BITS))


def _hashes(path: Path, turns: int = 1) -> np.ndarray:
    """64-bit difference hashes (greyscale 9x8, left < right), as bits: of the picture
    under the first *turns* of its eight turns and mirrors, (turns, 64)."""
    with Image.open(path) as opened:
        base = opened.convert("RGBA")
    white = Image.new("RGBA", base.size, (255, 255, 255, 255))
    white.alpha_composite(base)
    grey = white.convert("L")
    small = grey
    if turns > 1:
        small = grey.copy()
        small.thumbnail((64, 64), Image.LANCZOS)  # eight turns of a wallpaper cost seconds
    out = []
    for i in range(turns):  # numbered as every comparison of two pictures numbers them
        im = grey if i == 0 else Image.fromarray(turned(np.asarray(small), i))
        g = np.asarray(im.resize((9, 8), Image.LANCZOS), np.int16)
        out.append((g[:, 1:] > g[:, :-1]).ravel())
    return np.stack(out)


def distinct(paths: list[Path], min_bits: int = 16, turns: bool = False) -> list[Path]:
    """Leave out pictures the library already holds in another version (a colour variant,
    the same drawing filed twice): they would be near-duplicates nobody planted. *turns*:
    also a version turned or mirrored (an arrow the library holds pointing two ways, the
    four corners of one flourish), a copy by the copy rule's definition."""
    kept, hashes = [], []
    for p in paths:
        mine = _hashes(p, 8 if turns else 1)  # (k, 64)
        if all(_apart(mine, other, min_bits) for other in hashes):
            kept.append(p)
            hashes.append(mine[:1])
    return kept


def build(dest: Path = DUPES, every: int = 3, seed: int = 0) -> Path:
    """Write the set under *dest* with ``truth.json`` (groups of relative paths)."""
    if (dest / "truth.json").exists():
        return dest
    ensure_clipart()
    rng = np.random.RandomState(seed)
    shutil.rmtree(dest, ignore_errors=True)
    groups = []
    for i, src in enumerate(distinct(sorted(CLIPART.glob("*/*.png")))):
        rel = src.relative_to(CLIPART)
        (dest / rel.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest / rel)
        if i % every:
            continue
        group = [rel.as_posix()]
        with Image.open(src) as opened:
            base = opened.convert("RGBA")
            white = Image.new("RGBA", base.size, (255, 255, 255, 255))
            white.alpha_composite(base)
            base = white.convert("RGB")
        for j in range(rng.randint(1, 4)):
            kinds = list(rng.choice(EDITS, rng.randint(1, 3), replace=False))
            im, fmt, done = edit(base, kinds, rng)
            name = f"{rel.stem}.copy{j}.{'jpg' if fmt == 'JPEG' else 'png'}"
            im.save(dest / rel.parent / name, fmt)
            group.append((rel.parent / name).as_posix())
        if rng.rand() < 0.1:
            name = f"{rel.stem}.same.png"
            shutil.copy(src, dest / rel.parent / name)
            group.append((rel.parent / name).as_posix())
        groups.append(group)
    (dest / "truth.json").write_text(json.dumps({"groups": groups}, indent=1))
    return dest
