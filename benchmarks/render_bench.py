"""Pictures: each renderer's colour error against the source, and its time per thumbnail.

The set: the first two images of each of the 16 clip-art classes (colourful drawings and
renderings, the hard case for two colours per cell) and 16 Fashion-MNIST images. Each is
decoded as the app decodes it, drawn in a 40×20-cell box, and what the terminal would
show is rebuilt as pixels (6×6 per cell: each glyph's filled part in its ink, the rest in
its background). The error is the mean Euclidean RGB distance (0-441) per pixel against
the source resized to the same pixels; "from afar" compares one mean colour per cell,
as the eye sees dithering at a distance.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.data import ensure_clipart, ensure_fashion

BOX = (40, 20)


def _images() -> list[Path]:
    """Two pictures of each clip-art and Fashion-MNIST class (made here when this
    section runs alone: ``--only pictures``)."""
    out = []
    for folder in sorted(p for p in ensure_clipart().iterdir() if p.is_dir()):
        out += sorted(folder.glob("*.png"))[:2]
    for folder in sorted(p for p in ensure_fashion().iterdir() if p.is_dir()):
        out += sorted(folder.glob("*.png"))[:2]
    return out[:48]


def _error(art, im: Image.Image) -> tuple[float, float]:
    from tui.render import reconstruct

    shown = reconstruct(art).astype(np.float32)
    h, w = shown.shape[:2]
    src = np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS), np.float32)
    near = float(np.sqrt(((shown - src) ** 2).sum(-1)).mean())
    cells = (art.height, 6, art.width, 6, 3)
    far_a, far_b = shown.reshape(cells).mean((1, 3)), src.reshape(cells).mean((1, 3))
    far = float(np.sqrt(((far_a - far_b) ** 2).sum(-1)).mean())
    return near, far


def bench_pictures(rep) -> None:
    from rich.console import Console
    from rich_pixels import Pixels

    from engine.images import open_image
    from tui.render import BLOCKS, Choice, fit, picture
    from tui.render import palette as pal
    from tui.render.cells import CellArt

    paths = _images()
    images = [open_image(p) for p in paths]
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed at the end
    console = Console(width=200, color_system="truecolor", force_terminal=True, file=sink)
    rows = []
    for name in BLOCKS:
        for colours in ("truecolor", "256"):
            choice = Choice(name, colours)
            errs, times = [], []
            for im in images:
                t0 = time.perf_counter()
                art = picture(im, *BOX, choice)
                console.print(art)
                times.append(time.perf_counter() - t0)
                errs.append(_error(art, im))
            rows.append(
                [
                    name,
                    colours + (", dithered" if colours == "256" else ""),
                    f"{statistics.mean(e[0] for e in errs):.1f}",
                    f"{statistics.mean(e[1] for e in errs):.1f}",
                    f"{1000 * statistics.median(times):.2f}",
                ]
            )
    # 256 colours by nearest entry, no dithering: what Rich does to 24-bit colours
    errs, times = [], []
    for im in images:
        w, h = fit(im.width, im.height, *BOX)
        rgb = np.asarray(im.resize((w, 2 * h), Image.LANCZOS))
        t0 = time.perf_counter()
        top, bottom = pal.nearest(rgb[0::2]), pal.nearest(rgb[1::2])
        art = CellArt(np.full((h, w), "▄"), bottom, top, True)
        times.append(time.perf_counter() - t0)
        errs.append(_error(art, im))
    rows.append(
        [
            "halfblock",
            "256, nearest entry (no dithering)",
            f"{statistics.mean(e[0] for e in errs):.1f}",
            f"{statistics.mean(e[1] for e in errs):.1f}",
            "",
        ]
    )
    # the former way: rich-pixels building a style per cell from text
    old = []
    for im in images:
        t0 = time.perf_counter()
        w, h = fit(im.width, im.height, *BOX)
        console.print(Pixels.from_image(im.resize((w, 2 * h), Image.LANCZOS)))
        old.append(time.perf_counter() - t0)
    from benchmarks.report import table

    body = (
        f"{len(images)} images (32 clip-art, 16 Fashion-MNIST), each drawn in a 40×20-cell"
        " box; error: mean RGB distance per pixel against the source (lower is better); time:"
        " resize, cells and Rich segments, median per thumbnail, on the CPU below.\n\n"
        + table(["renderer", "colours", "error", "error from afar", "ms per thumbnail"], rows)
        + f"\n\nThe former half-blocks (rich-pixels from an image: a style parsed per cell)"
        f" took {1000 * statistics.median(old):.2f} ms per thumbnail for the same pictures,"
        " resize included as above."
    )
    sink.close()
    rep.section("Pictures: colour error and time", body, "python -m benchmarks.run --only pictures")
