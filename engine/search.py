"""Index a folder and find lookalikes: the engine's front door.

``ImageSimilaritySearch(root).index()`` brings the on-disk index up to date;
``find_similar_images(query, num_results)`` answers queries. Both can run at once
from different threads (the app searches while it indexes): searches see every
batch committed so far.

How a query is answered:

1. Its code: the stored one when the query is an indexed, unchanged file (no CNN),
   else the encoder's.
2. Candidates: datasketch ``MinHashLSH`` over the sign-token MinHashes of the
   *centred* codes (code minus the collection's mean code; see below).
3. Ranking: exact cosine between centred codes, over the candidates only. With
   ``exact=True``, or when LSH returns fewer than ``num_results`` candidates, every
   stored code is ranked instead, so a query always gets ``min(num_results, N-1)``
   results; :class:`SearchResult` says which way was used.

The centre. CNN features are non-negative, so all codes lean the same way and their
signs carry little information. Subtracting the collection's mean code fixes that
(measured: the LSH stage needs half as many candidates for the same recall). The
mean is computed from stored codes, kept in the index's metadata, and refitted,
with every signature recomputed from the stored codes (no CNN), each time the
collection has doubled since the last fit. Codes themselves never change.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.errors import LookalikeError
from engine.images import FileEntry, ImageError, SkippedFile, inside, open_image, walk_images
from engine.minhash import as_minhash, signatures
from engine.names import check_relpath, printable
from engine.store import (
    IndexDamaged,
    IndexFileError,
    Row,
    SQLiteStore,
    WriterLock,
    default_index_path,
)

DEFAULT_HASH_DIM = 128
DEFAULT_NUM_PERM = 128
DEFAULT_SEED = 1
#: Side of the square the CNN sees; both backbones were trained at 224 px.
INPUT_SIZE = 224
#: LSH banding (bands, rows per band) per num_perm, chosen by the benchmark suite.
DEFAULT_BANDS = {128: (32, 4)}
#: Stop refitting the centre past this many images: the mean has long settled.
CENTRE_REFIT_CAP = 200_000
#: Bounds on the settings an index may hold, checked before anything is allocated.
HASH_DIM_RANGE = (8, 2048)
NUM_PERM_RANGE = (2, 1024)


class SearchError(LookalikeError):
    """A query or setting that cannot be served; the message is one line for the user."""


class IndexMismatch(SearchError):
    """The index on disk was built with other settings than the ones asked for."""


class IndexBusy(SearchError):
    """Another process holds the index's writer lock; searching still works."""


@dataclass(frozen=True)
class Match:
    """One result: a path relative to the indexed root, and its cosine similarity."""

    path: str
    score: float
    rank: int = 0

    def absolute(self, root: str | os.PathLike[str]) -> Path:
        return Path(root) / self.path


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]
    mode: str  # "lsh", "exact", or "exact-fill" (LSH had too few candidates)
    candidates: int  # vectors scored
    indexed: int  # vectors in the index at query time
    seconds: float
    query_from_index: bool


@dataclass(frozen=True)
class Progress:
    """What ``on_progress`` receives: plain data, safe to hand to any thread."""

    done: int
    total: int
    failed: int
    images_per_s: float
    current: str
    phase: str  # "scanning", "encoding", "finishing", "done"


@dataclass
class IndexStats:
    """The outcome of one :meth:`ImageSimilaritySearch.index` run."""

    indexed: int = 0  # encoded in this run
    unchanged: int = 0  # already up to date, skipped
    removed: int = 0  # gone from disk, dropped from the index
    failed: list[SkippedFile] = field(default_factory=list)
    total: int = 0  # usable images in the index after the run
    seconds: float = 0.0
    cancelled: bool = False
    backbone: str = ""
    index_path: str = ""
    #: The index could not be written (read-only media): nothing was encoded, and
    #: ``pending`` files that are new, changed or gone are not reflected in it.
    readonly: bool = False
    pending: int = 0

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


class _Memory:
    """In-memory search state: centred unit codes and the LSH over them."""

    def __init__(self, hash_dim: int, num_perm: int, bands: tuple[int, int], seed: int) -> None:
        from datasketch import MinHashLSH

        self.seed = seed
        self.lsh = MinHashLSH(num_perm=num_perm, params=bands)
        self.units = np.zeros((0, hash_dim), np.float32)
        self.paths: list[str] = []
        self.row_of: dict[str, int] = {}
        self.alive = np.zeros(0, bool)
        self.count = 0

    def add(self, paths: list[str], units: np.ndarray, sigs: np.ndarray) -> None:
        for p in paths:
            self.remove(p)
        start = len(self.paths)
        need = start + len(paths)
        if need > len(self.units):
            grow = max(need, 2 * len(self.units), 1024)
            self.units = np.resize(self.units, (grow, self.units.shape[1]))
            self.alive = np.resize(self.alive, grow)
        self.units[start:need] = units
        self.alive[start:need] = True
        self.paths.extend(paths)
        with self.lsh.insertion_session() as session:
            for i, (p, s) in enumerate(zip(paths, sigs)):
                self.row_of[p] = start + i
                session.insert(start + i, as_minhash(s, self.seed), check_duplication=False)
        self.count += len(paths)

    def remove(self, path: str) -> None:
        row = self.row_of.pop(path, None)
        if row is not None:
            self.alive[row] = False
            self.lsh.remove(row)
            self.count -= 1


class ImageSimilaritySearch:
    """An image folder, its index, and similarity queries over it.

    Args:
        root: the folder of images.
        index_path: the SQLite file; default ``ROOT/.lookalike/index.sqlite`` (or a
            per-user cache file when ROOT is not writable).
        backbone: ``auto``, ``resnet50`` or ``efficientnet-lite0``. With ``auto``, an
            existing index keeps the backbone it was built with.
        hash_dim, num_perm, seed: code size, MinHash permutations and their seed. None
            means 128 / 128 / 1 for a new index and "whatever it has" for an existing one.
        weights: a state-dict file for the backbone.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision, runtime: how the CNN runs (see :class:`engine.encoder.DeepImageEncoder`);
            ``auto`` picks the fastest path measured on this machine. An existing index
            keeps its precision (codes of different precisions are not mixed).
        encoder: an encoder to use instead of building one (anything with
            ``encode_pixels``, ``identity``, ``describe`` and ``hash_dim``).
        batch_size: images per CNN batch (and per committed transaction).
        workers: decoding threads (default: the number of CPUs).
        lsh_bands: ``(bands, rows)`` for MinHashLSH; default from :data:`DEFAULT_BANDS`.
        rebuild: forget the existing index (and its settings) first.
        follow_links: let symbolic links lead out of *root* (see
            :func:`engine.images.walk_images`); results that lead out are left out
            otherwise.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        index_path: str | os.PathLike[str] | None = None,
        *,
        backbone: str = "auto",
        hash_dim: int | None = None,
        num_perm: int | None = None,
        seed: int | None = None,
        weights: str | os.PathLike[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
        runtime: str = "auto",
        encoder=None,
        batch_size: int = 64,
        workers: int | None = None,
        lsh_bands: tuple[int, int] | None = None,
        rebuild: bool = False,
        follow_links: bool = False,
    ) -> None:
        from engine.encoder import resolve_backbone

        for name, value, (lo, hi) in (
            ("hash_dim", hash_dim, HASH_DIM_RANGE),
            ("num_perm", num_perm, NUM_PERM_RANGE),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi
            ):
                raise SearchError(f"{name} must be a whole number from {lo} to {hi}, not {value}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SearchError(f"not a folder: {root}")
        self.root = self.root.resolve()
        self.follow_links = follow_links
        self.index_path = Path(index_path) if index_path else default_index_path(self.root)
        self.store = SQLiteStore(self.index_path, root=str(self.root))
        if rebuild:
            self.store.clear()
        meta = _checked_meta(self.store)
        asked = {
            "backbone": None
            if backbone == "auto" and weights is None
            else resolve_backbone(backbone, weights),
            "hash_dim": hash_dim,
            "num_perm": num_perm,
            "seed": seed,
            "precision": None if precision == "auto" else precision,
        }
        if "backbone" in meta:
            clashes = [
                f"{k} {meta[k]} (asked {v})"
                for k, v in asked.items()
                if v is not None and v != meta.get(k)
            ]
            if clashes:
                raise IndexMismatch(
                    f"the index at {self.index_path} was built with "
                    + ", ".join(clashes)
                    + ": use --rebuild to re-index with the new settings"
                )
            self.backbone = meta["backbone"]
            self.hash_dim, self.num_perm, self.seed = (
                meta["hash_dim"],
                meta["num_perm"],
                meta["seed"],
            )
            precision = meta["precision"]
        else:
            self.backbone = asked["backbone"] or resolve_backbone("auto", weights)
            self.hash_dim = hash_dim or DEFAULT_HASH_DIM
            self.num_perm = num_perm or DEFAULT_NUM_PERM
            self.seed = DEFAULT_SEED if seed is None else seed
        self.lsh_bands = lsh_bands or DEFAULT_BANDS.get(self.num_perm) or _bands_for(self.num_perm)
        if self.lsh_bands[0] * self.lsh_bands[1] > self.num_perm or self.lsh_bands[0] < 2:
            raise SearchError(f"LSH bands {self.lsh_bands} do not fit num_perm {self.num_perm}")
        self.weights = weights
        self.device = device
        self.precision = precision
        self.runtime = runtime
        self.batch_size = max(1, int(batch_size))
        self.workers = workers or max(1, os.cpu_count() or 1)
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._identity_checked = False
        self._lock = threading.RLock()
        self._memory: _Memory | None = None
        self._centre: np.ndarray | None = (
            np.asarray(meta["centre"], np.float32) if meta.get("centre") is not None else None
        )
        self._centre_count = int(meta.get("centre_count", 0))
        self._ok_count = 0

    # --- encoder --------------------------------------------------------------------

    @property
    def encoder(self):
        """The CNN, built on first use (importing torch and loading weights takes seconds)."""
        with self._encoder_lock:
            if self._encoder is None:
                from engine.encoder import DeepImageEncoder, EncoderError

                try:
                    enc = DeepImageEncoder(
                        self.hash_dim,
                        self.backbone,
                        weights=self.weights,
                        device=self.device,
                        precision=self.precision,
                        runtime=self.runtime,
                    )
                except EncoderError as exc:
                    raise SearchError(str(exc)) from None
                self._check_identity(enc)
                self._encoder = enc
            elif not self._identity_checked:
                self._check_identity(self._encoder)
            return self._encoder

    def _check_identity(self, enc) -> None:
        """Refuse an encoder whose codes would not be comparable with the stored ones."""
        meta = self.store.get_meta()
        ident = enc.identity
        if (
            meta.get("weights_id") not in (None, ident["weights_id"])
            or meta.get("hash_layer", ident["hash_layer"]) != ident["hash_layer"]
        ):
            raise IndexMismatch(
                f"the index at {self.index_path} was built with other {self.backbone}"
                " weights: use --rebuild to re-index with these"
            )
        for key in ("backbone", "hash_dim", "precision"):
            if key in meta and meta[key] != ident[key]:
                raise IndexMismatch(
                    f"the index at {self.index_path} was built with {key} {meta[key]}"
                    f" (this encoder: {ident[key]}): use --rebuild to re-index"
                )
        self._identity_checked = True

    def encoder_note(self) -> str:
        """How the CNN runs and why (empty until it is built)."""
        choice = getattr(self._encoder, "choice", None)
        return f"{choice.path.name}: {choice.why}" if choice is not None else ""

    def describe(self) -> str:
        """Backbone and device, for status lines."""
        if self._encoder is not None:
            return self._encoder.describe()
        return self.backbone

    def _load_pixels(self, relpath: str):
        """Decode + resize one image for the CNN (runs in the decode threads)."""
        im = open_image(self.root / relpath, draft_size=INPUT_SIZE)
        return _square_pixels(im, INPUT_SIZE)

    # --- indexing -------------------------------------------------------------------

    def index(
        self,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        progress_interval: float = 0.1,
    ) -> IndexStats:
        """Bring the index up to date with the folder: encode new and changed images,
        forget deleted ones. Commits every batch; cancelling keeps what was committed."""
        started = time.perf_counter()
        cancel = cancel or threading.Event()
        stats = IndexStats(backbone=self.backbone, index_path=str(self.index_path))
        if self.store.readonly:
            return self._pending_readonly(stats, started)
        lock = WriterLock(str(self.index_path))
        try:
            lock.acquire()
        except IndexFileError as exc:
            raise IndexBusy(str(exc)) from None
        try:
            return self._index_locked(stats, started, on_progress, cancel, progress_interval)
        finally:
            lock.release()

    def _diff(self, stats: IndexStats, known: dict, cancel, on_entry=None) -> tuple[list, list]:
        """Walk the folder against the stored file states: the entries to encode (new or
        changed) and the stored paths gone from disk. Skips, and failures seen earlier, go
        into *stats*; a cancel mid-walk reports nothing as gone."""
        old_errors = dict(self.store.failures())
        todo: list[FileEntry] = []
        seen: set[str] = set()
        for entry in walk_images(self.root, self.follow_links):
            if cancel.is_set():
                stats.cancelled = True
                return todo, []
            if isinstance(entry, SkippedFile):
                stats.failed.append(entry)
                continue
            seen.add(entry.relpath)
            old = known.get(entry.relpath)
            if old and old.size == entry.size and old.mtime_ns == entry.mtime_ns:
                stats.unchanged += 1
                if not old.ok:
                    err = old_errors.get(entry.relpath) or "failed earlier"
                    stats.failed.append(SkippedFile(entry.relpath, err))
            else:
                todo.append(entry)
            if on_entry is not None:
                on_entry(entry, len(todo))
        return todo, [p for p in known if p not in seen]

    def _pending_readonly(self, stats: IndexStats, started: float) -> IndexStats:
        """What an update would do to an index that cannot be written: count only."""
        todo, gone = self._diff(stats, self.store.file_states(), threading.Event())
        stats.pending = len(todo) + len(gone)
        stats.readonly = True
        stats.total = self.count()
        stats.seconds = time.perf_counter() - started
        return stats

    def _index_locked(self, stats, started, on_progress, cancel, interval) -> IndexStats:
        last_emit = [0.0]

        def emit(done: int, total: int, current: str, phase: str, force: bool = False) -> None:
            now = time.perf_counter()
            if on_progress is None or (not force and now - last_emit[0] < interval):
                return
            last_emit[0] = now
            elapsed = now - started
            on_progress(
                Progress(
                    done,
                    total,
                    len(stats.failed),
                    done / elapsed if elapsed else 0.0,
                    current,
                    phase,
                )
            )

        emit(0, 0, "", "scanning", force=True)
        known = self.store.file_states()
        todo, gone = self._diff(
            stats, known, cancel, lambda e, n: emit(0, n, e.relpath, "scanning")
        )
        if gone:
            self.store.write([], delete=gone)
            stats.removed = len(gone)
            with self._lock:
                if self._memory is not None:
                    for p in gone:
                        self._memory.remove(p)

        total = len(todo)
        redo = {e.relpath for e in todo}
        gone_set = set(gone)
        # Usable images once this run ends, kept up to date batch by batch: deciding when
        # to refit the centre must not re-read the whole index after every batch.
        self._ok_count = sum(
            1 for p, st in known.items() if st.ok and p not in redo and p not in gone_set
        )
        if todo and not stats.cancelled:
            self._write_meta_once()
            self._encode_all(todo, stats, cancel, emit)
        stats.cancelled = stats.cancelled or cancel.is_set()
        stats.total = self.count()
        stats.seconds = time.perf_counter() - started
        stats.backbone = self.describe()
        emit(total if not stats.cancelled else stats.indexed, total, "", "done", force=True)
        return stats

    def _write_meta_once(self) -> None:
        enc = self.encoder  # fail early (missing weights) before any decoding
        meta = self.store.get_meta()
        if "backbone" not in meta:
            self.store.set_meta(
                {**enc.identity, "num_perm": self.num_perm, "seed": self.seed, "scheme": "affine32"}
            )

    def _encode_all(self, todo: list[FileEntry], stats: IndexStats, cancel, emit) -> None:
        enc = self.encoder
        done = 0
        bs = self.batch_size
        chunks = [todo[i : i + bs] for i in range(0, len(todo), bs)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="lookalike-decode") as pool:

            def submit(chunk: list[FileEntry]) -> list[Future]:
                return [pool.submit(self._load_pixels, e.relpath) for e in chunk]

            pending = [submit(chunks[0])] if chunks else []
            for ci, chunk in enumerate(chunks):
                if ci + 1 < len(chunks):
                    pending.append(submit(chunks[ci + 1]))  # decode ahead while the CNN runs
                futures = pending.pop(0)
                good: list[FileEntry] = []
                pixels = []
                rows: list[Row] = []
                for entry, fut in zip(chunk, futures):
                    if cancel.is_set():
                        break
                    try:
                        pixels.append(fut.result())
                        good.append(entry)
                    except ImageError as exc:
                        stats.failed.append(SkippedFile(entry.relpath, str(exc)))
                        rows.append(Row(entry.relpath, entry.size, entry.mtime_ns, error=str(exc)))
                    emit(done, len(todo), entry.relpath, "encoding")
                if cancel.is_set():
                    for f in (f for batch in pending for f in batch):
                        f.cancel()
                    break
                if good:
                    codes = enc.encode_pixels(np.stack(pixels))
                    self._commit(good, codes, rows)
                elif rows:
                    self.store.write(rows)
                stats.indexed += len(good)
                done += len(chunk)
                emit(done, len(todo), chunk[-1].relpath, "encoding")

    def _commit(self, entries: list[FileEntry], codes: np.ndarray, failed_rows: list[Row]) -> None:
        """Store one encoded batch (one transaction) and make it searchable."""
        with self._lock:
            if self._centre is None:
                self.store.set_meta(self._fit_centre(codes))
            sigs = signatures(codes - self._centre, self.num_perm, self.seed)
            rows = [
                Row(e.relpath, e.size, e.mtime_ns, code=c, signature=s)
                for e, c, s in zip(entries, codes, sigs)
            ]
            self.store.write(rows + failed_rows)
            self._ok_count += len(entries)
            if self._memory is not None:
                self._memory.add([e.relpath for e in entries], self._unit(codes), sigs)
            self._maybe_refit(self._ok_count)

    def _maybe_refit(self, n: int) -> None:
        if self._centre_count >= CENTRE_REFIT_CAP or n < 2 * self._centre_count:
            return
        vec = self.store.vectors(self.hash_dim, self.num_perm)
        meta = self._fit_centre(vec.codes)
        sigs = signatures(vec.codes - self._centre, self.num_perm, self.seed)
        self.store.replace_signatures(vec.ids, sigs, meta)
        if self._memory is not None:
            self._memory = None  # rebuilt from the store on the next query

    def _fit_centre(self, codes: np.ndarray) -> dict:
        """Make the mean of *codes* the centre; returns the metadata to store with it."""
        self._centre = codes.mean(axis=0).astype(np.float32)
        self._centre_count = len(codes)
        return {"centre": self._centre.tolist(), "centre_count": self._centre_count}

    def _unit(self, codes: np.ndarray) -> np.ndarray:
        c = codes - self._centre
        norms = np.linalg.norm(c, axis=1, keepdims=True)
        return (c / np.maximum(norms, 1e-12)).astype(np.float32)

    # --- searching ------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            if self._memory is not None:
                return self._memory.count
        return self.store.count_ok()

    def failures(self) -> list[SkippedFile]:
        return [SkippedFile(p, e or "failed") for p, e in self.store.failures()]

    def load(self) -> int:
        """Read every stored vector into memory and build the LSH; returns the count.
        Called by the first search; call it ahead to take the cost at a time you choose."""
        with self._lock:
            if self._memory is None:
                vec = self.store.vectors(self.hash_dim, self.num_perm)
                mem = _Memory(self.hash_dim, self.num_perm, self.lsh_bands, self.seed)
                if len(vec.paths):
                    if self._centre is None:
                        self._centre = vec.codes.mean(axis=0)
                    mem.add(vec.paths, self._unit(vec.codes), vec.signatures)
                self._memory = mem
                # Build the per-token signature table now, not inside the first query.
                signatures(np.zeros((1, self.hash_dim), np.float32), self.num_perm, self.seed)
            return self._memory.count

    def _query_code(self, query: str | os.PathLike[str]) -> tuple[np.ndarray, str | None, bool]:
        """The query's code, its path inside the index (if any), and whether it came
        from the index."""
        qpath = Path(query).expanduser()
        try:
            qabs = qpath.resolve()
            rel = qabs.relative_to(self.root).as_posix()
        except (ValueError, OSError):
            rel = None
        if qpath.is_dir():
            raise SearchError(f"the query is a folder, not an image: {query}")
        if not qpath.is_file():
            raise SearchError(f"query image not found: {query}")
        if rel is not None and not self.follow_links and not inside(qpath, self.root):
            rel = None  # reached through a link out of the folder: not the stored file
        if rel is not None:
            found = self.store.lookup(rel, self.hash_dim)
            if found is not None and found[1] is not None:
                st = qpath.stat()
                if found[0].size == st.st_size and found[0].mtime_ns == st.st_mtime_ns:
                    return found[1], rel, True
        try:
            pixels = _square_pixels(open_image(qpath, draft_size=INPUT_SIZE), INPUT_SIZE)
        except ImageError as exc:
            raise SearchError(f"cannot use query {query}: {exc}") from None
        return self.encoder.encode_pixels(pixels[None])[0], rel, False

    def search(
        self, query: str | os.PathLike[str], num_results: int = 10, exact: bool = False
    ) -> SearchResult:
        """Like :meth:`find_similar_images`, with how the answer was found."""
        if num_results < 1:
            raise SearchError("num_results must be at least 1")
        t0 = time.perf_counter()
        code, rel, reused = self._query_code(query)
        result = self.search_code(code, num_results, exact, exclude=rel)
        return replace(result, seconds=time.perf_counter() - t0, query_from_index=reused)

    def search_code(
        self,
        code: np.ndarray,
        num_results: int = 10,
        exact: bool = False,
        exclude: str | None = None,
    ) -> SearchResult:
        """Search with a code you already have (``exclude``: a stored path to leave out)."""
        t0 = time.perf_counter()
        self.load()
        with self._lock:
            mem = self._memory
            self_row = mem.row_of.get(exclude) if exclude is not None else None
            want = min(num_results, mem.count - (1 if self_row is not None else 0))
            if self._centre is None or want <= 0:
                return SearchResult([], "exact", 0, mem.count, time.perf_counter() - t0, False)
            q = self._unit(np.asarray(code, np.float32)[None])[0]
            mode = "exact"
            n = len(mem.paths)
            cand_rows = None
            if not exact:
                sig = signatures((code - self._centre)[None], self.num_perm, self.seed)[0]
                cands = mem.lsh.query(as_minhash(sig, self.seed))
                if self_row is not None and self_row in cands:
                    cands.remove(self_row)
                if len(cands) >= want:
                    cand_rows = np.fromiter(cands, np.int64, len(cands))
                    mode = "lsh"
                else:
                    mode = "exact-fill"
            if cand_rows is not None and len(cand_rows) * 8 < n:
                # Few candidates: score just those rows.
                scores = mem.units[cand_rows] @ q
                scored = len(cand_rows)
            else:
                # Many candidates, or exact: one contiguous product over every row and a
                # mask is faster than gathering a large share of the rows first.
                if cand_rows is None:
                    allowed = mem.alive[:n].copy()
                    if self_row is not None:
                        allowed[self_row] = False
                else:
                    allowed = np.zeros(n, bool)
                    allowed[cand_rows] = True
                scored = int(allowed.sum())
                scores = np.where(allowed, mem.units[:n] @ q, -np.inf)
                cand_rows = np.arange(n)
            k = min(want, scored)
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.lexsort((cand_rows[top], -scores[top]))]
            rows = cand_rows[top]
            scores = scores[top]
            paths = [mem.paths[r] for r in rows]
        kept = [(p, sc) for p, sc in zip(paths, scores) if self._may_show(p)]
        matches = [
            Match(p, float(np.clip(sc, -1.0, 1.0)), rank + 1) for rank, (p, sc) in enumerate(kept)
        ]
        return SearchResult(matches, mode, scored, mem.count, time.perf_counter() - t0, False)

    def _may_show(self, path: str) -> bool:
        """Whether a stored *path* may be returned, shown and opened.

        A path that is absolute or climbs out of the root means a crafted or damaged
        index: an error. One that resolves out of the root through a symbolic link is
        left out unless ``follow_links`` (the walk would not have indexed it).
        """
        why = check_relpath(path)
        if why is not None:
            raise IndexDamaged(str(self.index_path), f"{why}: {printable(path)}", str(self.root))
        return self.follow_links or inside(self.root / path, self.root)

    def find_similar_images(
        self, query: str | os.PathLike[str], num_results: int = 10, exact: bool = False
    ) -> list[Match]:
        """The ``num_results`` stored images most similar to *query*, best first.

        *query* may be inside or outside the root; it never matches itself.
        """
        return self.search(query, num_results, exact).matches

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ImageSimilaritySearch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _checked_meta(store: SQLiteStore) -> dict:
    """The index's metadata, every value checked for type and range before it is used
    to size anything (a crafted ``hash_dim`` of 1e9 must not allocate terabytes)."""
    from engine.encoder import BACKBONES

    meta = store.get_meta()
    if "backbone" not in meta:
        return meta

    def whole(key: str, lo: int, hi: int) -> None:
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise store.damaged(
                f"{key} {printable(repr(v)[:40])} is not a whole number in {lo}..{hi}"
            )

    if meta["backbone"] not in BACKBONES:
        raise store.damaged(f"unknown backbone {printable(repr(meta['backbone'])[:40])}")
    whole("hash_dim", *HASH_DIM_RANGE)
    whole("num_perm", *NUM_PERM_RANGE)
    whole("seed", 0, 2**32 - 1)
    if "centre_count" in meta:
        whole("centre_count", 0, 2**62)
    if meta.get("precision") not in ("fp32", "bf16"):
        raise store.damaged(f"unknown precision {printable(repr(meta.get('precision'))[:40])}")
    if not isinstance(meta.get("weights_id"), (str, type(None))):
        raise store.damaged("weights_id is not text")
    centre = meta.get("centre")
    if centre is not None:
        if not isinstance(centre, list) or len(centre) != meta["hash_dim"]:
            raise store.damaged("the centre does not have hash_dim values")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in centre):
            raise store.damaged("the centre holds values that are not numbers")
        if not np.isfinite(np.asarray(centre, np.float64)).all():
            raise store.damaged("the centre holds values that are not finite")
    return meta


def _bands_for(num_perm: int) -> tuple[int, int]:
    """Rows per band 4 (what the benchmarks favour), as many bands as fit."""
    r = 4 if num_perm >= 8 else 1
    return max(2, num_perm // r), r


def _square_pixels(im, size: int) -> np.ndarray:
    """Fit *im* in a white ``size`` square (aspect kept), as uint8 (size, size, 3).

    Padding instead of cropping keeps whole garments, products and documents in view;
    catalogue images mostly sit on white already.
    """
    from PIL import Image

    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
    if (nw, nh) != (size, size):
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(im, ((size - nw) // 2, (size - nh) // 2))
        im = canvas
    return np.asarray(im, dtype=np.uint8)
