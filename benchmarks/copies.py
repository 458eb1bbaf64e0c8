"""Copy-detection test sets: the whole family of everyday edits, at two ranges of strength,
on several sources, with a truth file. Built on first use under bench-data/.

Each set holds distinct pictures (pictures the source already holds twice are left out,
see :func:`benchmarks.dupes.distinct`); every third gets one to three copies, each with
one or two edits drawn from :data:`KINDS`, and one in ten a byte-identical copy. Every
other picture is a negative: it must not be grouped with anything.

Strengths come in two ranges that do not overlap (:data:`TUNE` and :data:`HELD`): the
decision in :mod:`engine.copies` was tuned on the first only; the second, and the sources
never looked at while tuning (other clip-art categories, photographs), say whether it
generalises. ``mild`` sets use only the gentle kinds (downscale, small crops, JPEG,
brightness) at the old set's strengths.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from benchmarks.data import DATA, sized
from benchmarks.dupes import distinct

OPENCLIPART = Path("/usr/share/openclipart/png")
#: Clip-art categories tuned on (the benchmark's varied set) and held out.
TUNE_CLASSES = (
    "animals/birds",
    "animals/mammals",
    "buildings/homes",
    "food/fruit",
    "people/smilies",
    "plants/flowers",
    "recreation/sports",
    "transportation/vehicles",
)
HELD_CLASSES = (
    "office",
    "tools",
    "geography",
    "people",
    "unsorted",
    "recreation/party",
    "education",
    "plants",
    "animals",
    "recreation/toys",
    "food/desserts",
    "signs_and_symbols/flags",
)
#: Clip-art categories no decision was ever tuned or looked at on: measured last, once.
UNSEEN_CLASSES = (
    "buttons",
    "computer",
    "containers",
    "decorations",
    "electronics",
    "logos",
    "science",
    "shapes",
    "special",
    "signs_and_symbols",
    "buildings",
    "transportation",
)
#: Icons of a desktop theme at 48 px: flat glyphs and their look-alike siblings (a
#: folder and a folder opened), in colour and in one grey (the "symbolic" ones). Split
#: in two by alternation: ``icons-tune`` was looked at while choosing the small-picture
#: rules, ``icons-held`` was not. Classes are the theme's own folders.
ICONS = Path("/usr/share/icons/Adwaita/48x48")
PHOTO_DIRS = (
    Path("/usr/share/backgrounds"),
    Path("/usr/share/wallpapers"),
)

KINDS = (
    "downscale",
    "crop",
    "crop-side",
    "border",
    "mirror",
    "turn",
    "tilt",
    "brightness",
    "contrast",
    "grey",
    "caption",
    "jpeg",
    "webp",
)
MILD = ("downscale", "crop", "jpeg", "brightness")

#: (low, high) per kind: tuned on TUNE, checked on HELD (the other part of each range).
TUNE = {
    "downscale": (0.45, 1.0),
    "crop": (0.0, 0.08),
    "crop-side": (0.0, 0.10),
    "border": (0.0, 0.08),
    "tilt": (1.0, 4.0),
    "brightness": (0.0, 0.15),
    "contrast": (0.0, 0.15),
    "caption": (0.03, 0.06),
    "jpeg": (45, 90),
    "webp": (45, 90),
}
HELD = {
    "downscale": (0.25, 0.45),
    "crop": (0.08, 0.15),
    "crop-side": (0.10, 0.20),
    "border": (0.08, 0.15),
    "tilt": (4.0, 7.0),
    "brightness": (0.15, 0.30),
    "contrast": (0.15, 0.30),
    "caption": (0.06, 0.10),
    "jpeg": (20, 45),
    "webp": (20, 45),
}
#: The old set's strengths (mild edits).
OLD = {
    "downscale": (0.5, 0.8),
    "crop": (0.02, 0.05),
    "brightness": (0.0, 0.10),
    "jpeg": (40, 70),
}


def edit(im: Image.Image, kind: str, span: dict, rng: np.random.RandomState):
    """One edit of *kind*, its strength drawn from *span*; returns the picture, the format
    to save it in (None: PNG) and the strength."""
    lo, hi = span.get(kind, (0, 0))
    u = float(rng.uniform(lo, hi))
    w, h = im.size
    if kind == "downscale":
        return im.resize((max(6, round(w * u)), max(6, round(h * u))), Image.LANCZOS), None, u
    if kind == "crop":
        dx, dy = round(w * u), round(h * u)
        return im.crop((dx, dy, w - dx, h - dy)), None, u
    if kind == "crop-side":
        side = rng.randint(4)
        box = [0, 0, w, h]
        box[side] = (
            round((w, h)[side % 2] * u) if side < 2 else box[side] - round((w, h)[side % 2] * u)
        )
        return im.crop(tuple(box)), None, u
    if kind == "border":
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:  # a frame all round
            b = max(1, round(max(w, h) * u))
            return ImageOps.expand(im, border=b, fill=colour), None, u
        # a letterbox: bars top and bottom, or left and right
        if rng.rand() < 0.5:
            b = max(1, round(h * u))
            return ImageOps.expand(im, border=(0, b, 0, b), fill=colour), None, u
        b = max(1, round(w * u))
        return ImageOps.expand(im, border=(b, 0, b, 0), fill=colour), None, u
    if kind == "mirror":
        return ImageOps.mirror(im), None, 1
    if kind == "turn":
        k = int(rng.choice([90, 180, 270]))
        return im.rotate(k, expand=True), None, k
    if kind == "tilt":
        angle = u * (1 if rng.rand() < 0.5 else -1)
        fill = (255, 255, 255) if rng.rand() < 0.5 else (0, 0, 0)
        return im.rotate(angle, Image.BICUBIC, expand=True, fillcolor=fill), None, angle
    if kind == "brightness":
        f = 1 + u * (1 if rng.rand() < 0.5 else -1)
        return ImageEnhance.Brightness(im).enhance(f), None, f
    if kind == "contrast":
        f = 1 + u * (1 if rng.rand() < 0.5 else -1)
        return ImageEnhance.Contrast(im).enhance(f), None, f
    if kind == "grey":
        return ImageOps.grayscale(im).convert("RGB"), None, 1
    if kind == "caption":
        out = im.copy()
        bar = max(2, round(h * u))
        top = 0 if rng.rand() < 0.5 else h - bar
        draw = ImageDraw.Draw(out)
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        draw.rectangle((0, top, w, top + bar), fill=colour)
        ink = tuple(255 - c for c in colour)
        draw.text((2, top), "(c) lookalike test " + str(rng.randint(10**6)), fill=ink)
        return out, None, u
    if kind in ("jpeg", "webp"):
        q = int(round(u))
        buf = io.BytesIO()
        fmt = "JPEG" if kind == "jpeg" else "WEBP"
        im.convert("RGB").save(buf, fmt, quality=q)
        out = Image.open(io.BytesIO(buf.getvalue()))
        out.load()
        return out.convert("RGB"), fmt, q
    raise ValueError(kind)


def flat(src: Path, max_side: int = 640) -> Image.Image:
    with Image.open(src) as opened:
        opened.draft("RGB", (max_side, max_side))
        base = opened.convert("RGBA")
    white = Image.new("RGBA", base.size, (255, 255, 255, 255))
    white.alpha_composite(base)
    im = white.convert("RGB")
    if max(im.size) > max_side:  # a photograph as people keep them, not a wallpaper
        im.thumbnail((max_side, max_side), Image.LANCZOS)
    return im


#: Words a library names one drawing's turned or mirrored versions by (the corners of a
#: flourish, an arrow pointing four ways): one of them is kept.
DIRECTIONS = "left|right|up|down|top|bottom|upper|lower|horizontal|vertical"


def _one_per_name(files: list[Path]) -> list[Path]:
    import re

    seen, out = set(), []
    directed: list[str] = []  # names that said a direction, without it
    for f in files:
        stem = re.sub(r"(_?bw|_?\d+|_?(colou?r|black|white|grey|gray))+$", "", f.stem.lower())
        stem = re.sub(r"_?(bw|black_white)_?", "_", stem)
        bare = re.sub(rf"_?({DIRECTIONS})(?=_|$)", "", stem).strip("_")
        if bare != stem.strip("_"):
            # the library cuts names short at 25 characters, so a longer direction word
            # leaves less of the rest: one such name starting the other is the same
            if any(
                min(len(k), len(bare)) >= 8 and k[: len(bare)] == bare[: len(k)] for k in directed
            ):
                continue
            directed.append(bare)
        if bare not in seen:
            seen.add(bare)
            out.append(f)
    return out


def sources(which: str, per_class: int = sized(30, 3)) -> list[tuple[str, Path]]:
    """(class, file) pairs of a source, each picture once (not also turned, mirrored,
    numbered or in another size): ``clipart-tune``, ``clipart-held``, ``photos``
    (wallpapers from Debian's desktop packages: none where none is installed),
    ``icons-tune`` and ``icons-held`` (:data:`ICONS`, every other one of them each, at
    most *per_class* of each folder; none where not installed)."""
    out: list[tuple[str, Path]] = []
    if which.startswith("icons"):
        files = distinct(sorted(ICONS.glob("*/*.png")))  # one of each look, across folders
        files = distinct(files[1 if which == "icons-held" else 0 :: 2], turns=True)
        for folder in sorted({f.parent for f in files}):
            mine = [f for f in files if f.parent == folder][:per_class]
            out += [(f"icons-{folder.name}", f) for f in mine]
    elif which.startswith("clipart"):
        classes = {"clipart-tune": TUNE_CLASSES, "clipart-unseen": UNSEEN_CLASSES}.get(
            which, HELD_CLASSES
        )
        for cls in classes:
            files = sorted((OPENCLIPART / cls).glob("*.png"))
            files = [f for f in files if f.stat().st_size < 4_000_000]
            out += [(cls.replace("/", "-"), f) for f in files[: 3 * per_class]]
        # pictures the library holds twice, also across categories, are left out, and so
        # are its variants of one drawing (a "_bw" or numbered version of the same name)
        kept = set(distinct(_one_per_name([f for _c, f in out]), turns=True))
        seen: dict[str, int] = {}
        picked = []
        for cls, f in out:
            if f in kept and seen.get(cls, 0) < per_class:
                seen[cls] = seen.get(cls, 0) + 1
                picked.append((cls, f))
        out = picked
    elif which == "photos":
        files = sorted(
            {
                f.resolve()
                for d in PHOTO_DIRS
                if d.is_dir()
                for f in d.rglob("*")
                if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
            }
        )
        # a Plasma theme holds one picture at several sizes (a portrait one a crop of it)
        # and a screenshot of it: one of each folder is kept
        folders: set[Path] = set()
        for f in files:
            if f.stem != "screenshot" and not (
                f.parent.name.startswith("images") and f.parent in folders
            ):
                folders.add(f.parent)
                out.append(("photos", f))
        kept = set(distinct([f for _c, f in out], turns=True))
        out = [(c, f) for c, f in out if f in kept][: sized(10_000, 2 * per_class)]
    return out


#: Long sides of the originals of a *small* set (icons, sprites, thumbnails, 32 px
#: data sets), drawn evenly.
SMALL = (24, 64)


def recoloured(im: Image.Image, rng: np.random.RandomState) -> Image.Image:
    """The picture in other colours, the same in grey: its hue turned by 60-300 degrees,
    or two of its colour channels swapped."""
    if rng.rand() < 0.5:
        h, s, v = im.convert("HSV").split()
        turn = int(rng.randint(43, 214))
        return Image.merge("HSV", (h.point(lambda x: (x + turn) % 256), s, v)).convert("RGB")
    r, g, b = im.convert("RGB").split()
    return Image.merge("RGB", (b, g, r) if rng.rand() < 0.5 else (g, r, b))


def build(
    which: str,
    strength: str,
    kinds=KINDS,
    every: int = 3,
    seed: int = 0,
    small: bool = False,
    recolour: bool = False,
) -> Path:
    """Write the set *which* (see :func:`sources`) with edits of *strength* (``tune``,
    ``held`` or ``old``) under bench-data/copies/ with ``truth.json``; *small*: each
    original first shrunk to a long side in :data:`SMALL` (its copies edited from that);
    *recolour*: each original with copies also gets a :func:`recoloured` twin, another
    picture that must not be grouped with it (listed in the truth as ``recoloured``),
    where that changes its colours visibly (by 8 of 255 on average: a drawing in black
    and white has none)."""
    span = {"tune": TUNE, "held": HELD, "old": OLD}[strength]
    name = f"{which}-{strength}" + ("-mild" if tuple(kinds) == MILD else "")
    name += ("-small" if small else "") + ("-recolour" if recolour else "")
    name += f"-s{seed}" if seed else ""
    sizes = np.random.RandomState(seed + 7)
    dest = DATA / "copies" / name
    if (dest / "truth.json").exists():
        return dest
    rng = np.random.RandomState(seed)
    shutil.rmtree(dest, ignore_errors=True)
    groups, edits, twins = [], {}, []
    colours = np.random.RandomState(seed + 11)
    for i, (cls, src) in enumerate(sources(which)):
        base = flat(src)
        if small:
            side = int(sizes.randint(SMALL[0], SMALL[1] + 1))
            base.thumbnail((side, side), Image.LANCZOS)
        folder = dest / cls
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{i:04d}-{src.stem}"  # wallpapers of several themes share names
        orig = f"{cls}/{stem}.png"
        base.save(dest / orig)
        if i % every:
            continue
        group = [orig]
        for j in range(rng.randint(1, 4)):
            chosen = list(rng.choice(list(kinds), rng.randint(1, 3), replace=False))
            im, fmt, done = base, None, {}
            for kind in chosen:
                im, f, strength_ = edit(im, kind, span, rng)
                fmt = f or fmt
                done[kind] = round(float(strength_), 3)
            ext = {"JPEG": "jpg", "WEBP": "webp"}.get(fmt, "png")
            rel = f"{cls}/{stem}.copy{j}.{ext}"
            # the low-quality encode is baked into the pixels; written at 95 in its format
            im.save(dest / rel, fmt or "PNG", **({"quality": 95} if fmt else {}))
            group.append(rel)
            edits[rel] = done
        twin = recoloured(base, colours) if recolour else base
        if np.abs(np.asarray(twin, np.int16) - np.asarray(base, np.int16)).mean() >= 8:
            rel = f"{cls}/{stem}.recolour.png"  # a twin in visibly other colours only
            twin.save(dest / rel)
            twins.append([orig, rel])
        if rng.rand() < 0.1:
            rel = f"{cls}/{stem}.same.png"
            shutil.copy(dest / orig, dest / rel)
            group.append(rel)
            edits[rel] = {"identical": 1}
        groups.append(group)
    dest.mkdir(parents=True, exist_ok=True)  # an empty source gives an empty set
    truth = {"groups": groups, "edits": edits, "recoloured": twins}
    (dest / "truth.json").write_text(json.dumps(truth, indent=1))
    return dest
