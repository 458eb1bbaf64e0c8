"""What counts as an image, how odd ones decode, and how bad ones are reported."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.images import FileEntry, ImageError, SkippedFile, open_image, walk_images
from support import make_image


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_modes_are_converted(tmp_path: Path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "alpha.png")
    assert open_image(tmp_path / "alpha.png").getpixel((0, 0)) == (255, 255, 255)

    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(tmp_path / "pal.gif")
    assert open_image(tmp_path / "pal.gif").getpixel((0, 0)) == (0, 255, 0)

    wide = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    wide.save(tmp_path / "grey16.png")
    out = open_image(tmp_path / "grey16.png")
    assert (
        out.mode == "RGB"
        and out.getpixel((1, 1)) == (255, 255, 255)
        and out.getpixel((0, 0)) == (0, 0, 0)
    )

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = open_image(tmp_path / "cmyk.jpg").getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60

    Image.new("L", (8, 8), 77).save(tmp_path / "grey.tif")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.bmp")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "x.webp", lossless=True)
    assert open_image(tmp_path / "grey.tif").getpixel((0, 0)) == (77, 77, 77)
    assert open_image(tmp_path / "x.bmp").getpixel((0, 0)) == (1, 2, 3)
    assert open_image(tmp_path / "x.webp").getpixel((0, 0)) == (9, 9, 9)


def test_gif_first_frame(tmp_path: Path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r, g, b = open_image(tmp_path / "anim.gif").getpixel((0, 0))
    assert r > 200 and b < 50


def test_exif_orientation_applied(tmp_path: Path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert open_image(tmp_path / "rot.jpg").size == (20, 40)


def test_big_jpeg_drafted(tmp_path: Path):
    Image.new("RGB", (2000, 1600), (10, 200, 10)).save(tmp_path / "big.jpg")
    assert max(open_image(tmp_path / "big.jpg", draft_size=224).size) < 1000


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("text.jpg", b"hello, I am not a picture at all", "not an image"),
        ("bomb.png", _png_claiming(100_000, 100_000), "decompression bomb"),
        ("big.png", _png_claiming(10_000, 7_000), "decompression bomb"),
    ],
)
def test_bad_files_give_one_line_reasons(tmp_path: Path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as err:
        open_image(tmp_path / name)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_truncated_and_corrupt(tmp_path: Path):
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)).save(
        buf, "JPEG"
    )
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        open_image(tmp_path / "cut.jpg")
    png = bytearray(_png_claiming(8, 8))
    png[40:50] = b"\xff" * 10  # damage the compressed data
    (tmp_path / "bad.png").write_bytes(bytes(png))
    with pytest.raises(ImageError):
        open_image(tmp_path / "bad.png")


def test_permission_error_is_a_reason(tmp_path: Path, monkeypatch):
    make_image(tmp_path / "x.png", 1)

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        open_image(tmp_path / "x.png")


def test_walk_by_content_hidden_and_links(tmp_path: Path):
    root = tmp_path / "root"
    make_image(root / "a.png", 1)
    make_image(root / "sub" / "noext", 2, fmt="PNG")  # image without an extension
    (root / "notes.txt").write_text("not an image")
    make_image(root / ".hidden" / "h.png", 3)
    make_image(root / ".lookalike" / "i.png", 4)
    os.symlink(root, root / "sub" / "loop")  # a loop back to the root
    os.symlink(root / "missing.png", root / "dangling.png")
    found = list(walk_images(root))
    entries = sorted(e.relpath for e in found if isinstance(e, FileEntry))
    skipped = [e for e in found if isinstance(e, SkippedFile)]
    assert entries == ["a.png", "sub/noext"]
    assert [(s.path, s.reason) for s in skipped] == [("dangling.png", "broken symbolic link")]


def test_unexpected_decoder_errors_become_reasons(tmp_path: Path, monkeypatch):
    make_image(tmp_path / "x.png", 1)

    def broken_plugin(*_a, **_k):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image, "open", broken_plugin)
    with pytest.raises(ImageError, match="cannot decode: error: unpack requires"):
        open_image(tmp_path / "x.png")


def test_a_greyscale_file_gives_the_cnn_the_same_pixels(tmp_path: Path):
    """A greyscale file is fitted as one channel (faster): the CNN's input is what the
    three-channel way gives, square or not, enlarged or reduced, PNG or JPEG."""
    from engine.images import read_image, square_pixels

    rng = np.random.RandomState(3)
    for i, (w, h) in enumerate([(28, 28), (40, 17), (300, 500), (7, 7)]):
        a = (rng.rand(h, w) * 255).astype(np.uint8)
        for ext in ("png", "jpg"):
            path = tmp_path / f"g{i}.{ext}"
            Image.fromarray(a, "L").save(path)
            for size in (160, 224):
                im, _ = read_image(path, size)
                assert im.mode == "RGB" and im.info["grey"]
                fast = square_pixels(im, size)
                im.info["grey"] = False
                assert np.array_equal(fast, square_pixels(im, size)), (w, h, ext, size)
    colour = tmp_path / "c.png"
    Image.fromarray((rng.rand(9, 9, 3) * 255).astype(np.uint8), "RGB").save(colour)
    assert not read_image(colour, 224)[0].info["grey"]
