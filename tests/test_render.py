"""The picture renderers: exact cells for small known pictures, the 256-colour palette,
detection and fallback, and the app's compare view."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from tui.render import RenderError, choose, fit, picture, reconstruct
from tui.render import palette as pal
from tui.render.blocks import HALFBLOCK, QUADRANT, SEXTANT, sextants

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def rgb(rows: list[list[tuple[int, int, int]]]) -> np.ndarray:
    return np.array(rows, np.uint8)


def hexrgb(c: tuple[int, int, int]) -> int:
    return (c[0] << 16) | (c[1] << 8) | c[2]


def test_halfblocks_keep_every_pixel():
    # 2 wide, 4 high: two cells across, two down; upper pixel is the background
    art = HALFBLOCK.cells(rgb([[RED, BLUE], [GREEN, WHITE], [BLUE, RED], [WHITE, GREEN]]), False)
    assert (art.width, art.height) == (2, 2)
    assert art.cell(0, 0) == ("▄", hexrgb(GREEN), hexrgb(RED))
    assert art.cell(0, 1) == ("▄", hexrgb(WHITE), hexrgb(BLUE))
    assert art.cell(1, 0) == ("▄", hexrgb(WHITE), hexrgb(BLUE))
    text = Console(width=10, color_system="truecolor", force_terminal=True)
    with text.capture() as cap:
        text.print(art)
    assert cap.get().count("▄") == 4 and "38;2;0;255;0" in cap.get()


def test_quadrants_and_sextants_pick_the_glyph_and_two_colours():
    # one quadrant cell: upper left red, the rest blue
    art = QUADRANT.cells(rgb([[RED, BLUE], [BLUE, BLUE]]), False)
    assert (art.width, art.height) == (1, 1)
    assert art.cell(0, 0) == ("▘", hexrgb(RED), hexrgb(BLUE))  # red: the group drawn
    # one sextant cell: left column green, right column white
    art = SEXTANT.cells(rgb([[GREEN, WHITE], [GREEN, WHITE], [GREEN, WHITE]]), False)
    ch, fg, bg = art.cell(0, 0)
    assert {(ch, fg, bg)} & {
        ("▌", hexrgb(GREEN), hexrgb(WHITE)),
        ("▐", hexrgb(WHITE), hexrgb(GREEN)),
    }
    # a flat cell is one colour, whatever the glyph
    art = SEXTANT.cells(np.full((3, 2, 3), 77, np.uint8), False)
    ch, fg, bg = art.cell(0, 0)
    assert bg == hexrgb((77, 77, 77)) and (ch == " " or fg == bg)
    assert len(set(sextants())) == 64


def test_cell_counts_follow_the_box_and_the_aspect():
    im = Image.new("RGB", (200, 100), (10, 20, 30))
    for pixels in ("halfblock", "quadrant", "sextant"):
        art = picture(im, 40, 20, choose(pixels, "truecolor", env={}))
        # twice as wide as high; a cell is about twice as high as wide
        assert (art.width, art.height) == (40, 10)
    assert fit(100, 400, 40, 20) == (10, 20)


def test_256_colours_use_the_fixed_palette_and_dither_gradients():
    ramp = np.repeat(np.linspace(30, 220, 64)[None, :, None], 32, axis=0)
    image = np.repeat(ramp, 3, axis=2).astype(np.uint8)
    image[..., 0] = np.clip(image[..., 0] + 25, 0, 255)  # a warm grey ramp
    art = HALFBLOCK.cells(image, True)
    used = set(art.fg.ravel().tolist()) | set(art.bg.ravel().tolist())
    assert art.indexed and min(used) >= 16 and max(used) <= 255  # never the theme's 16
    flat = pal.nearest(image)
    assert len(used) > len(set(flat.ravel().tolist()))  # dithering mixes more entries
    # ... so that, averaged over the eye's few pixels, it is closer to the source
    shown = reconstruct(art, (1, 2)).astype(np.float32)
    plain = pal.colours(flat).astype(np.float32)

    def blurred_error(a):
        k = 4
        h, w = a.shape[0] // k * k, a.shape[1] // k * k
        pool = a[:h, :w].reshape(h // k, k, w // k, k, 3).mean((1, 3))
        src = image[:h, :w].astype(np.float32).reshape(h // k, k, w // k, k, 3).mean((1, 3))
        return np.abs(pool - src).mean()

    assert blurred_error(shown) < blurred_error(plain)
    # a colour that is in the palette comes back as itself
    assert pal.nearest(np.array([[95, 135, 175]], np.float32))[0] == 16 + 36 * 1 + 6 * 2 + 3


def test_detection_and_fallback():
    assert choose(env={"COLORTERM": "truecolor"}) == choose("halfblock", "truecolor", env={})
    c = choose(env={})
    assert (c.pixels, c.colours) == ("halfblock", "256") and "24-bit" in c.why
    assert choose(color_system="truecolor", env={}).colours == "truecolor"
    c = choose("kitty", "truecolor", env={"TERM": "xterm-256color"})
    assert c.pixels == "halfblock" and "kitty" in c.why
    assert choose("kitty", "truecolor", env={"TERM": "xterm-kitty"}).pixels == "kitty"
    assert choose(env={"LOOKALIKE_PIXELS": "sextant", "COLORTERM": "24bit"}).key == (
        "sextant",
        "truecolor",
    )
    with pytest.raises(RenderError, match="--pixels"):
        choose("braille", env={})
    with pytest.raises(RenderError, match="--colors"):
        choose(colours="16", env={})


def test_kitty_placeholders_and_transmission():
    """Cells: U+10EEEE with its row and column marks, in the image id's colour; the
    picture goes out once as PNG in 4096-byte chunks, wrapped for tmux inside tmux."""
    import base64

    from tui.render.kitty import PLACEHOLDER, diacritics

    marks = diacritics()
    assert marks[:4] == ("\u0305", "\u030d", "\u030e", "\u0310") and len(set(marks)) == 96
    noisy = Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3), np.uint8))
    art = picture(noisy, 6, 3, choose("kitty", "truecolor", env={"TERM": "xterm-kitty"}))
    assert (art.width, art.height) == (6, 3)
    row = art.lines()[2][0]
    assert row.text == "".join(PLACEHOLDER + marks[2] + marks[c] for c in range(6))
    r, g, b = row.style.color.triplet
    assert (r << 16 | g << 8 | b) == art.image_id
    seq = art.transmission(env={})
    assert seq.startswith(f"\x1b_Ga=T,U=1,f=100,t=d,q=2,i={art.image_id},c=6,r=3,m=1;")
    chunks = [c.split(";", 1)[1] for c in seq.split("\x1b\\") if c]
    assert base64.b64decode("".join(chunks)) == art.png and all(len(c) <= 4096 for c in chunks)
    assert seq.endswith("\x1b\\") and "m=0;" in seq
    wrapped = art.transmission(env={"TMUX": "/tmp/tmux-0/default,1,0"})
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b_G") and wrapped.count("\x1bPtmux;") == len(chunks)
