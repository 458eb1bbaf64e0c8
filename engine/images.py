"""Finding and decoding images: the engine's one notion of what an image file is.

Everything here is cheap to import (Pillow and numpy, no torch) so the app can use
:func:`looks_like_image_name` to filter its file tree before the CNN is loaded.

Rules, in one place:

* A file is a *candidate* when its extension is one Pillow registers, or when it has
  another extension but its first bytes carry a known image signature (content, not
  name, decides). Other files are ignored silently: a README next to the images is
  not an error.
* A candidate that cannot be decoded becomes a :class:`SkippedFile` with a one-line
  reason; the walk and the run go on.
* Hidden entries (name starting with ``.``, which includes ``.lookalike/``) are not
  walked.
* Symbolic links stay inside the root: a link whose target resolves inside the root
  is followed, one whose target is outside is reported as a skip and not read (a
  folder someone sent you must not make lookalike read your home directory). With
  ``follow_links=True`` links may leave the root. Either way a directory reached
  twice (a loop, or two links to one place) is walked once, so every walk ends, and
  a dangling link is reported, not raised.
* Names are kept as Python gives them, undecodable bytes as surrogate escapes (see
  :mod:`engine.names`): a name that is not valid UTF-8 is an image like any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from engine.errors import ImageError

#: Images claiming more pixels than this are refused before any pixel is allocated.
#: 64 megapixels covers every camera sensor sold today with room to spare.
MAX_PIXELS = 64_000_000
#: Files larger than this are not read whole into memory.
MAX_FILE_BYTES = 1 << 30
#: Pictures longer than this many times their width (or wider than their height) are
#: refused before decoding: no camera, scanner or panorama makes one, and a 1 x 60,000,000
#: strip (117 KB as a PNG, under the pixel cap) costs seconds and gigabytes to resample.
MAX_ASPECT = 1000

# Signatures of the formats worth sniffing in files whose extension says nothing.
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (8, b"WEBP"),  # RIFF....WEBP
    (0, b"II*\x00"),  # TIFF little endian
    (0, b"MM\x00*"),  # TIFF big endian
    (0, b"BM"),  # BMP
    (4, b"ftypavif"),
    (4, b"ftypheic"),
    (0, b"\x00\x00\x01\x00"),  # ICO
)


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Extensions of the formats Pillow can open (computed on first use: loading every
    Pillow plugin takes tens of milliseconds, which the app's first frame should not pay)."""
    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    # Formats Pillow can open but whose files are rarely photos and often something else.
    exts -= {".ps", ".eps", ".pdf", ".h5", ".hdf", ".grib", ".bufr", ".fits", ".fit"}
    return frozenset(exts)


@dataclass(frozen=True)
class SkippedFile:
    """A file the engine looked at and could not use, with the reason in plain words."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileEntry:
    """A candidate image found by the walk: path relative to the root, size and mtime."""

    relpath: str
    size: int
    mtime_ns: int


def looks_like_image_name(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image extension Pillow can open (no I/O)."""
    return os.path.splitext(os.fspath(path))[1].lower() in image_extensions()


def has_image_signature(path: str | os.PathLike[str]) -> bool:
    """True when the first bytes of the file match a known image format."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[off : off + len(sig)] == sig for off, sig in _MAGIC)


def is_candidate(path: str | os.PathLike[str]) -> bool:
    """The engine's test for "an image file": an image extension, or image magic bytes.

    The walk and the app's file tree both use it, so the tree shows what gets indexed.
    """
    return looks_like_image_name(path) or has_image_signature(path)


def is_hidden(name: str) -> bool:
    return name.startswith(".")


#: The reason given for a link that is not followed because it leaves the root.
LINK_OUTSIDE = "symbolic link to outside the folder: not followed (--follow-links allows it)"


def inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when *path*, symbolic links resolved, is *root* or lies under it.

    *root* must already be resolved (``os.path.realpath``).
    """
    real = os.path.realpath(path)
    root = os.fspath(root)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def walk_images(
    root: str | os.PathLike[str], follow_links: bool = False, leave_out: Iterable[str] = ()
) -> Iterator[FileEntry | SkippedFile]:
    """Yield every candidate image under *root* (sorted, deterministic), and skips.

    Folders named in *leave_out* (relative to *root*: where duplicates were moved) are
    not entered.

    Symbolic links are followed while they stay inside *root* (anywhere with
    *follow_links*); each real directory is visited once, so a link loop ends. A
    dangling link with an image-like name, and a link out of the root that points at
    a folder or has an image-like name, are yielded as skips.
    """
    root_path = Path(root)
    root_real = os.path.realpath(root_path)
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = root_path.stat()
    except OSError as exc:
        raise ImageError(f"cannot read folder {root}: {exc.strerror or exc}") from None
    seen_dirs.add((st.st_dev, st.st_ino))
    for rel in leave_out:  # its folder counts as seen: no link leads into it either
        with contextlib.suppress(OSError):
            folder = (root_path / rel).stat()
            seen_dirs.add((folder.st_dev, folder.st_ino))
    stack: list[tuple[Path, str]] = [(root_path, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield SkippedFile(prefix or ".", f"cannot list folder: {exc.strerror or exc}")
            continue
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            if is_hidden(entry.name):
                continue
            rel = f"{prefix}{entry.name}"
            if not follow_links and entry.is_symlink() and not inside(entry.path, root_real):
                try:
                    leads_to_dir = entry.is_dir(follow_symlinks=True)
                except OSError:
                    leads_to_dir = False
                if leads_to_dir or looks_like_image_name(entry.name):
                    yield SkippedFile(rel, LINK_OUTSIDE)
                continue
            try:
                est = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                if entry.is_symlink() and looks_like_image_name(entry.name):
                    yield SkippedFile(rel, "broken symbolic link")
                continue
            except OSError as exc:
                yield SkippedFile(rel, f"cannot stat: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(est.st_mode):
                key = (est.st_dev, est.st_ino)
                if key not in seen_dirs:
                    seen_dirs.add(key)
                    subdirs.append((Path(entry.path), rel + "/"))
            elif stat.S_ISREG(est.st_mode) and is_candidate(entry.path):
                yield FileEntry(rel, est.st_size, est.st_mtime_ns)
        stack.extend(reversed(subdirs))


def read_image(
    path: str | os.PathLike[str], draft_size: int | None = None, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, bytes]:
    """:func:`open_image` from a single read of the file, with the SHA-256 of its bytes
    (what tells byte-identical copies apart from look-alikes)."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise ImageError(f"file too large (over {MAX_FILE_BYTES >> 30} GiB)")
        with open(path, "rb") as fh:
            data = fh.read()
    except ImageError:
        raise
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("file vanished") from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    return open_image(path, draft_size, max_pixels, data=data), hashlib.sha256(data).digest()


def open_image(
    path: str | os.PathLike[str],
    draft_size: int | None = None,
    max_pixels: int = MAX_PIXELS,
    data: bytes | None = None,
) -> Image.Image:
    """Decode *path* (or its bytes, *data*, already read) to an 8-bit RGB image ready
    for a CNN, or raise :class:`ImageError`.

    EXIF orientation is applied, alpha is composited on white, palette, 16-bit,
    float, greyscale and CMYK images are converted, animations give their first
    frame. With *draft_size*, JPEGs are decoded at reduced scale (DCT scaling) when
    they are at least twice that size, which is several times faster for photos.
    """
    try:
        if (len(data) if data is not None else os.path.getsize(path)) == 0:
            raise ImageError("empty file")
        opened = Image.open(io.BytesIO(data) if data is not None else path)
        try:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large ({width}x{height} pixels, limit {max_pixels:,}):"
                    " refused as a possible decompression bomb"
                )
            if max(width, height) > MAX_ASPECT * max(min(width, height), 1):
                raise ImageError(
                    f"extreme aspect ratio ({width}x{height} pixels, over {MAX_ASPECT}:1):"
                    " not a picture lookalike can compare"
                )
            if draft_size and opened.format == "JPEG":
                opened.draft("RGB", (draft_size, draft_size))
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            grey = upright.mode == "L" and "transparency" not in upright.info
            im = to_rgb(upright)
            im = opened.copy() if im is opened else im
            im.info["pixels"] = width * height  # before any reduced-size decoding
            im.info["size"] = (width, height)
            im.info["grey"] = grey  # a greyscale file: its three channels are equal
            return im
        finally:
            opened.close()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("refused as a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("file vanished") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower():
            text = "truncated file"
        raise ImageError(f"cannot decode: {text}") from None
    except MemoryError:
        raise ImageError("out of memory decoding this image") from None
    except Exception as exc:  # a decoder choking on hostile input: a skip, not a crash
        raise ImageError(f"cannot decode: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def guarded(work, *args):
    """``work(*args)``, with any failure turned into :class:`ImageError`: whatever one
    file does to a decoder, a resampler or a hash (MemoryError included) is that file's
    skip with a reason, never the end of a run."""
    try:
        return work(*args)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("out of memory processing this image") from None
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise ImageError(f"cannot process: {text}") from None


def square_pixels(im: Image.Image, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Fit *im* in a white ``size`` square (aspect kept), as uint8 (size, size, 3), into
    *out* where given (a C-contiguous array of that shape: a row of a batch).

    Padding instead of cropping keeps whole garments, products and documents in view;
    catalogue images mostly sit on white already. A greyscale file (``info["grey"]``
    from :func:`open_image`) is resized as one channel and spread to three at the end:
    the same pixels, in 0.11 ms instead of 0.24 for a 28 px picture.
    """
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    grey = bool(im.info.get("grey")) and im.mode == "RGB"
    if grey:
        im = im.convert("L")  # exact where the channels are equal
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if (nw, nh) != (size, size):
        canvas = Image.new(im.mode, (size, size), 255 if grey else (255, 255, 255))
        canvas.paste(im, ((size - nw) // 2, (size - nh) // 2))
        im = canvas
    if grey:
        cv2 = opencv()
        return cv2.cvtColor(np.asarray(im, np.uint8), cv2.COLOR_GRAY2RGB, dst=out)
    if out is None:
        return np.asarray(im, dtype=np.uint8)
    out[...] = np.asarray(im, dtype=np.uint8)
    return out


@lru_cache(maxsize=1)
def opencv():
    """OpenCV, on one thread: its work here is a picture at a time, beside the CNN's
    threads or other pictures' (it spreads a grey picture to three channels in 5 us
    where Pillow takes 51, 224 px; SIFT describes one picture per thread), and its own
    threads would only compete with them."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Wide greyscale: stretch the actual range to 8 bits instead of clipping; in a
        # float picture that range is its finite values' (one inf pixel must not turn
        # the rest black): +inf shows as the top, -inf and NaN as the bottom
        a = np.asarray(im.convert("F") if im.mode != "F" else im, np.float64)
        finite = np.isfinite(a)
        lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0, 0)
        a = np.where(finite, a, np.where(a == np.inf, hi, lo))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(np.clip((a - lo) * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        im.mode in ("L", "RGB") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


# Our own limit (MAX_PIXELS) is checked before decoding; Pillow's warning would only
# repeat it on stderr. Its hard error for 2x its own limit still applies.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Truncated JPEG/PNG files must fail loudly, never decode half a picture silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False
