"""The candidate graph kept in the index (:mod:`engine.triage.candidates`): one blob,
:func:`encode`, read back by :func:`decode` as untrusted (see the notes there: a bounded
header, every array checked against it and the blob's size, every row in range;
anything else and the graph is made again)."""

from __future__ import annotations

import json
import struct

import numpy as np

from engine import copies
from engine.triage.candidates import CandidateGraph

#: The blob's name in the index, its first bytes and format version.
BLOB = "triage-graph"
MAGIC = b"lookalike candidate graph\n"
VERSION = 2
#: The header is JSON of at most this many bytes; texts are stored as lengths, then bytes.
HEADER_MAX = 1 << 16
TEXT_LENGTH = np.dtype("<u4")
ROW_ARRAYS: dict[str, np.dtype] = {
    "tags": np.dtype("<i8"),
    "flat": np.dtype("<f4"),
    "nearest": np.dtype("<f4"),
    "nearest_row": np.dtype("<i8"),
    "nearest_exact": np.dtype("u1"),
}
PAIR_ARRAYS: dict[str, np.dtype] = {
    "left": np.dtype("<i8"),
    "right": np.dtype("<i8"),
    "rank": np.dtype("<i8"),
    "score": np.dtype("<f4"),
    "similarity": np.dtype("<f4"),
    "pixels": np.dtype("<f4"),
    "transform": np.dtype("<i8"),
    "fine": np.dtype("<f4"),
    "small": np.dtype("<f4"),
    "colour": np.dtype("<f4"),
    "points": np.dtype("<i4"),
    "point_copy": np.dtype("u1"),
    "point_why": np.dtype("<i4"),
}


def encode(graph: CandidateGraph) -> bytes:
    """The graph as one blob: magic, header length, header (JSON), then the arrays."""
    named = np.flatnonzero(graph.pairs.point_why != "")
    texts = graph.pairs.point_why[named]
    whys = sorted(set(texts.tolist()))
    code = {w: i for i, w in enumerate(whys)}
    codes = np.full(len(graph.pairs), -1, np.int32)
    codes[named] = [code[w] for w in texts.tolist()]
    arrays = {
        "tags": graph.tags,
        "flat": graph.flat,
        "nearest": graph.nearest,
        "nearest_row": graph.nearest_row,
        "nearest_exact": graph.nearest_exact,
        **{k: getattr(graph.pairs, k) for k in PAIR_ARRAYS if k != "point_why"},
        "point_why": np.asarray(codes, np.int32).reshape(-1),
    }
    paths = [p.encode("utf-8", "surrogateescape") for p in graph.paths]
    encoded = [w.encode("utf-8", "surrogateescape") for w in whys]
    header = {
        "version": VERSION,
        "fingerprint": graph.fingerprint,
        "method": graph.method,
        "certain": graph.certain,
        "rows": len(graph),
        "pairs": len(graph.pairs),
        "whys": len(encoded),
    }
    head = json.dumps(header).encode()
    body = [MAGIC, struct.pack("<I", len(head)), head]
    for name, dtype in {**ROW_ARRAYS, **PAIR_ARRAYS}.items():
        body.append(np.ascontiguousarray(arrays[name], dtype).tobytes())
    for strings in (paths, encoded):  # lengths, then the bytes
        body.append(np.array([len(x) for x in strings], TEXT_LENGTH).tobytes())
        body += strings
    return b"".join(body)


def decode(blob: object, fingerprint: str) -> CandidateGraph | None:
    """The graph in *blob* if it is exactly what :func:`encode` writes and was made under
    *fingerprint*; else None."""
    try:
        return _decode(blob, fingerprint)
    except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError, RecursionError):
        return None


def _consistent(arrays: dict[str, np.ndarray], n: int, m: int, whys: int) -> bool:
    """Whether the arrays of a graph of *n* rows and *m* pairs (with *whys* reasons) hold
    only what lookalike writes: rows in range, pairs ordered, finite scores."""
    left, right, why = arrays["left"], arrays["right"], arrays["point_why"]
    if m and (left.min() < 0 or right.max() >= n or (left >= right).any()):
        return False
    if m and (why.min() < -1 or why.max() >= whys):
        return False
    near = arrays["nearest_row"]
    if n and (near.min() < -1 or near.max() >= n):
        return False
    if m and ((arrays["transform"] < 0).any() or (arrays["transform"] > 7).any()):
        return False
    return bool(np.isfinite(arrays["score"]).all() and np.isfinite(arrays["similarity"]).all())


def _decode(blob, fingerprint: str) -> CandidateGraph | None:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        return None
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        return None
    at = len(MAGIC)
    (size,) = struct.unpack_from("<I", view, at)
    at += 4
    if size > HEADER_MAX:
        return None
    header = json.loads(bytes(view[at : at + size]))
    at += size
    if not isinstance(header, dict) or header.get("version") != VERSION:
        return None
    if header.get("fingerprint") != fingerprint:
        return None
    n, m, w = header["rows"], header["pairs"], header["whys"]
    for v in (n, m, w):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1 << 32:
            return None
    arrays = {}
    for name, dtype in {**ROW_ARRAYS, **PAIR_ARRAYS}.items():
        count = n if name in ROW_ARRAYS else m
        need = count * dtype.itemsize
        if at + need > len(view):
            return None
        arrays[name] = np.frombuffer(view[at : at + need], dtype).copy()
        at += need
    texts = []
    for count in (n, w):
        need = count * TEXT_LENGTH.itemsize
        if at + need > len(view):
            return None
        lengths = np.frombuffer(view[at : at + need], TEXT_LENGTH).tolist()
        at += need
        if sum(lengths) > len(view) - at or max(lengths, default=0) > 1 << 16:
            return None
        out = []
        for x in lengths:
            out.append(bytes(view[at : at + x]).decode("utf-8", "surrogateescape"))
            at += x
        texts.append(out)
    if at != len(view):
        return None
    paths, whys = texts
    from engine.names import first_bad_relpath

    if first_bad_relpath(paths) is not None or len(set(paths)) != n:
        return None
    if not _consistent(arrays, n, m, len(whys)):
        return None
    left, right, why = arrays["left"], arrays["right"], arrays["point_why"]
    pairs = copies.Pairs(left, right, arrays["rank"])
    for name in PAIR_ARRAYS.keys() - {"left", "right", "rank", "point_copy", "point_why"}:
        setattr(pairs, name, arrays[name])  # the evidence, as written
    pairs.point_copy = arrays["point_copy"].astype(bool)
    table = np.array(["", *whys], object)
    pairs.point_why = table[why + 1]
    certain = header.get("certain")
    method = header.get("method")
    if not isinstance(certain, (int, float)) or not isinstance(method, str) or len(method) > 80:
        return None
    return CandidateGraph(
        paths,
        arrays["tags"],
        arrays["flat"],
        arrays["nearest"],
        arrays["nearest_row"],
        arrays["nearest_exact"].astype(bool),
        pairs,
        fingerprint,
        method,
        float(certain),
    )
