"""Index a folder and find lookalikes: the engine's front door, a thin façade.

``ImageSimilaritySearch(root).index()`` brings the index up to date;
``find_similar_images(query, num_results)`` answers queries. Both can run at once from
different threads (the app searches while it indexes): searches see every batch
committed so far. The work is done by small modules:

* :mod:`engine.settings` — every knob, its default and bounds;
* :mod:`engine.storage` — where the index lives (``open_store``);
* :mod:`engine.indexer` — walk, decode, encode, commit;
* :mod:`engine.vectors` — exact scoring, LSH candidates, the planner, re-ranking;
* :mod:`engine.centre` — the collection's mean, subtracted before any cosine;
* :mod:`engine.results` — the dataclasses handed back.

How a query is answered: its code and features (the stored ones when the query is an
indexed, unchanged file: no CNN), then :meth:`engine.vectors.VectorIndex.search`. The
query never matches itself, and always gets ``min(num_results, N-1)`` results.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from engine.centre import Centre
from engine.centre import from_meta as centre_from_meta
from engine.errors import LookalikeError
from engine.images import ImageError, SkippedFile, guarded, inside, open_image, square_pixels
from engine.indexer import Indexer, minhash_band_keys
from engine.names import check_relpath, printable
from engine.paths import check_index_folder, default_index_path
from engine.results import IndexStats, Match, Progress, SearchResult
from engine.settings import (
    DEFAULT_HASH_DIM,
    DEFAULT_NUM_PERM,
    DEFAULT_SEED,
    HASH_DIM_RANGE,
    INPUT_SIZE,
    INPUT_SIZES,
    NUM_PERM_RANGE,
    Settings,
    SettingsError,
    bands_for,
)
from engine.storage import (
    Batch,
    IndexBusy,
    IndexDamaged,
    IndexFileError,
    NewerIndex,
    OlderIndex,
    SnapshotMoved,
    is_redis,
    open_store,
    remove_index,
)
from engine.vectors import Planner, VectorIndex

__all__ = [
    "ImageSimilaritySearch",
    "IndexBusy",
    "IndexDamaged",
    "IndexFileError",
    "IndexMismatch",
    "IndexStats",
    "Match",
    "Progress",
    "SearchError",
    "SearchResult",
]


#: datasketch's permutation scheme for the signatures (engine.minhash.SCHEME, which a
#: test checks; not imported here: datasketch costs 0.3 s to import). datasketch does
#: not record it, so the index does, and another scheme is refused on attaching.
MINHASH_SCHEME = "affine32"


#: Seconds between two looks at whether other processes committed to the index.
RECHECK = 0.5


class SearchError(LookalikeError):
    """A query or setting that cannot be served; the message is one line for the user."""


class IndexMismatch(SearchError):
    """The index on disk was built with other settings than the ones asked for."""


class ImageSimilaritySearch:
    """An image folder, its index, and similarity queries over it.

    Args:
        root: the folder of images.
        index_path: where the index lives; default ``ROOT/.lookalike/index.sqlite`` (or a
            per-user cache file when ROOT is not writable).
        settings: a :class:`engine.settings.Settings`; keyword arguments override it
            (``hash_dim=64``, ``backbone="resnet50"``, ...). With ``None`` / ``auto``, a
            new index gets the defaults and an existing one keeps its own.
        encoder: an encoder to use instead of building one (anything with ``encode`` or
            ``encode_pixels``, ``identity``, ``describe`` and ``hash_dim``).
        rebuild: forget the existing index (and its settings) first.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        index_path: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        encoder=None,
        rebuild: bool = False,
        **overrides,
    ) -> None:
        try:
            settings = (settings or Settings()).with_(**overrides)
        except SettingsError as exc:
            raise SearchError(str(exc)) from None
        from engine.backbones import resolve_backbone

        self.settings = settings
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SearchError(f"not a folder: {root}")
        self.root = self.root.resolve()
        self.follow_links = settings.follow_links
        url = settings.store
        if url and is_redis(url):
            self.index_path: Path | str = url  # shown as the store's location, below
        else:
            if url and url.startswith("sqlite:"):
                url = url[len("sqlite:") :]
            path = index_path or settings.index_path or url
            self.index_path = Path(path) if path else default_index_path(self.root)
            if not path:
                check_index_folder(self.index_path.parent)
            url = str(self.index_path)
        try:
            self.store = open_store(url, root=str(self.root))
        except (OlderIndex, NewerIndex, IndexDamaged):
            if not rebuild:
                raise
            remove_index(url)  # recognised as ours, beyond repair
            self.store = open_store(url, root=str(self.root))
        if is_redis(url):
            self.index_path = self.store.location  # never the password
        if rebuild:
            self.store.clear()
        meta = _checked_meta(self.store)
        asked_backbone = (
            None
            if settings.backbone == "auto" and settings.weights is None
            else resolve_backbone(settings.backbone, settings.weights)
        )
        asked = {
            "backbone": asked_backbone,
            "hash_dim": settings.hash_dim,
            "num_perm": settings.num_perm,
            "seed": settings.seed,
            "precision": None if settings.precision == "auto" else settings.precision,
            "input_size": settings.input_size,
        }
        if "backbone" in meta:
            clashes = [
                f"{k} {meta.get(k)} (asked {v})"
                for k, v in asked.items()
                if v is not None and v != meta.get(k)
            ]
            if clashes:
                raise IndexMismatch(
                    f"the index at {self.index_path} was built with "
                    + ", ".join(clashes)
                    + f": run lookalike index {self.root} --rebuild to re-index with the new"
                    " settings"
                )
            self.backbone = meta["backbone"]
            self.hash_dim, self.num_perm, self.seed = (
                meta["hash_dim"],
                meta["num_perm"],
                meta["seed"],
            )
            self.precision = meta["precision"]
            self.lsh_bands = (meta["bands"], meta["rows"])
            self.input_size = meta["input_size"]
        else:
            self.backbone = asked_backbone or resolve_backbone("auto", settings.weights)
            self.hash_dim = settings.hash_dim or DEFAULT_HASH_DIM
            self.num_perm = settings.num_perm or DEFAULT_NUM_PERM
            self.seed = DEFAULT_SEED if settings.seed is None else settings.seed
            self.precision = settings.precision
            self.lsh_bands = bands_for(self.num_perm)
            self.input_size = settings.input_size or INPUT_SIZE
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._identity_checked = False
        self._lock = threading.RLock()
        self._centre: Centre | None = centre_from_meta(meta)
        self._vectors: VectorIndex | None = None
        self._stale = True
        self._version: tuple = ()
        self._recheck_at = 0.0
        self.planner = Planner()

    # --- settings the other modules read ---------------------------------------------

    @property
    def centre(self) -> Centre | None:
        return self._centre

    def set_centre(self, centre: Centre) -> None:
        with self._lock:
            self._centre = centre
            self._stale = True

    @property
    def feature_dim(self) -> int:
        meta = self.store.get_meta()
        return int(meta.get("feature_dim", 0))

    def band_keys(self, codes: np.ndarray, centre: Centre | None = None) -> np.ndarray:
        """LSH band keys of *codes* around *centre* (default: the current one)."""
        centre = centre or self._centre
        bands, rows = self.lsh_bands
        return minhash_band_keys(codes, centre.codes, self.num_perm, self.seed, bands, rows)

    def reload_centre(self) -> None:
        """Take the stored centre if it differs from this process's (another process, or
        another machine of a shared index, fitted or refitted it)."""
        meta = self.store.get_meta()
        with self._lock:
            self._take_centre(meta)

    def _take_centre(self, meta: dict) -> None:
        gen = meta.get("centre_gen")
        if gen is not None and (self._centre is None or self._centre.generation != gen):
            self._centre = centre_from_meta(_checked_meta_values(self.store, meta))
            self._stale = True

    def committed(self) -> None:
        """The store changed (a batch, a refit, a compaction): searches take a new view."""
        with self._lock:
            self._stale = True

    # --- setting duplicates aside --------------------------------------------------

    def move_aside(self, relpaths: list[str], folder: str | os.PathLike[str]):
        """Move *relpaths* into *folder* (:func:`engine.quarantine.move_aside`), with the
        folder recorded in the index first and the moved files forgotten after (a move
        of many would otherwise look like a missing disk to the next run)."""
        from engine.quarantine import move_aside

        if self.store.readonly:
            raise IndexFileError(
                f"the index at {self.index_path} cannot be written"
                f" ({self.store.readonly_why}): a move could not be recorded, so none is made"
            )
        for p in relpaths:
            self.check_stored_path(p)
        report = move_aside(self.root, relpaths, folder, store=self.store)
        self._forget(report.moved)
        return report

    def relabel(self, relpath: str, label: str):
        """Move *relpath* into the class folder *label* (``DIR/label/NAME``), undoable;
        the old path is forgotten, the next run indexes the new one."""
        from engine.quarantine import move_within

        self.check_stored_path(relpath)
        if "/" in label or check_relpath(label) is not None:
            raise SearchError(f"not a class folder: {printable(label)}")
        to = f"{label}/{relpath.rsplit('/', 1)[-1]}"
        report = move_within(self.root, [(relpath, to)])
        self._forget(report.moved)
        return report

    def _forget(self, relpaths: list[str]) -> None:
        if relpaths:
            try:
                with self.store.writer():
                    self.store.commit(Batch(delete=relpaths))
                self.committed()
            except IndexBusy:
                pass  # the run under way, or the next one, notices they are gone

    def undo_move(self):
        """Put back the newest move (:func:`engine.quarantine.undo`), trusting only the
        folders recorded in the index."""
        from engine.quarantine import undo

        return undo(self.root, meta=self.store.get_meta())

    # --- encoder --------------------------------------------------------------------

    @property
    def encoder(self):
        """The CNN, built on first use (importing torch and loading weights takes seconds)."""
        with self._encoder_lock:
            if self._encoder is None:
                from engine.backbones import EncoderError
                from engine.onnx_runtime import light_encoder

                options = {
                    "weights": self.settings.weights,
                    "device": self.settings.device,
                    "precision": self.precision,
                    "runtime": self.settings.runtime,
                    "input_size": self.input_size,
                }
                try:
                    # Without torch when ONNX Runtime is what would run anyway (a second
                    # saved on every one-off query of a new image).
                    enc = light_encoder(self.hash_dim, self.backbone, **options)
                    if enc is None:
                        from engine.encoder import DeepImageEncoder

                        enc = DeepImageEncoder(self.hash_dim, self.backbone, **options)
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
                f" weights: run lookalike index {self.root} --rebuild to re-index with these"
            )
        for key in ("backbone", "hash_dim", "precision"):
            if key in meta and meta[key] != ident[key]:
                raise IndexMismatch(
                    f"the index at {self.index_path} was built with {key} {meta[key]}"
                    f" (this encoder: {ident[key]}): run lookalike index {self.root} --rebuild"
                    " to re-index"
                )
        self._identity_checked = True

    def write_identity(self) -> None:
        """Record the encoder and LSH settings in a new index (fails early, before any
        decoding, when the weights are missing)."""
        enc = self.encoder
        if "backbone" in self.store.get_meta():
            return
        bands, rows = self.lsh_bands
        feature_dim = int(getattr(enc, "feature_dim", 0)) if hasattr(enc, "encode") else 0
        if not getattr(self.store, "keep_features", True):
            feature_dim = 0  # codes only, no re-ranking: the store was asked to be small
        identity = {
            **enc.identity,
            "num_perm": self.num_perm,
            "seed": self.seed,
            "scheme": MINHASH_SCHEME,
            "bands": bands,
            "rows": rows,
            "feature_dim": feature_dim,
            "input_size": self.input_size,
            "slots": 0,
        }
        claim = getattr(self.store, "claim_meta", None)
        if claim is None:
            self.store.set_meta({**identity, "folder": self._folder_note()})
            return
        # A shared index: the first worker's identity holds; a worker that would write
        # other codes is refused, as on attaching.
        meta = claim(identity)
        clashes = [
            f"{k} {meta.get(k)} (this worker: {v})"
            for k, v in identity.items()
            if k != "slots" and meta.get(k) != v
        ]
        if clashes:
            raise IndexMismatch(
                f"the index at {self.index_path} was built with " + ", ".join(clashes)
            )
        claim({"folder": self._folder_note()})

    def _folder_note(self) -> str:
        """Where the index was first built from (host and folder), for messages."""
        import socket

        return f"{socket.gethostname()}:{os.fsencode(self.root).decode('utf-8', 'replace')}"

    @property
    def store_kind(self) -> str:
        """Which store holds the index, in words for summaries and the app."""
        return "Redis, shared" if getattr(self.store, "shared", False) else "SQLite"

    def describe(self) -> str:
        """Backbone and device, for status lines."""
        if self._encoder is not None:
            return self._encoder.describe()
        return self.backbone

    def encoder_note(self) -> str:
        """How the CNN runs and why (empty until it is built)."""
        choice = getattr(self._encoder, "choice", None)
        return f"{choice.path.name}: {choice.why}" if choice is not None else ""

    # --- indexing -------------------------------------------------------------------

    def index(
        self,
        on_progress=None,
        cancel: threading.Event | None = None,
        progress_interval: float = 0.1,
    ) -> IndexStats:
        """Bring the index up to date with the folder: encode new and changed images,
        forget deleted ones. Commits every batch; cancelling keeps what was committed.
        Raises :class:`IndexBusy` when another process is indexing into the same index."""
        started = time.perf_counter()
        cancel = cancel or threading.Event()
        stats = IndexStats(
            backbone=self.backbone, index_path=str(self.index_path), store=self.store_kind
        )
        indexer = Indexer(self, self.store)
        if self.store.readonly:
            indexer.pending(stats)
        else:
            with self.store.writer():
                indexer.run(stats, on_progress, cancel, progress_interval)
        stats.total = self.count()
        stats.seconds = time.perf_counter() - started
        stats.backbone = self.describe()
        return stats

    # --- searching ------------------------------------------------------------------

    def count(self) -> int:
        return self.store.count()

    def failures(self) -> list[SkippedFile]:
        return [SkippedFile(p, e or "failed") for p, e in self.store.failures()]

    def vectors(self) -> VectorIndex:
        """The current searchable view (a new one after every commit, reusing what it can).

        Commits by this process mark the view stale at once; commits by other processes
        (another `lookalike index`, other machines on a shared index) are noticed by the
        store's :meth:`version`, asked at most every :data:`RECHECK` seconds."""
        with self._lock:
            now = time.monotonic()
            if self._vectors is not None and not self._stale and now >= self._recheck_at:
                self._recheck_at = now + RECHECK
                if self.store.version() != self._version:
                    self._stale = True
            if self._vectors is None or self._stale:
                self._stale = False
                bands, rows = self.lsh_bands
                self._version = self.store.version()
                self._recheck_at = now + RECHECK
                snap = self.store.snapshot()
                self._take_centre(snap.meta)
                self._stale = False
                fresh = VectorIndex(snap, self._centre, bands, rows, self.store.damaged)
                if self._vectors is not None:
                    fresh.follows(self._vectors)
                self._vectors = fresh
            return self._vectors

    def load(self) -> int:
        """Read what the first search needs (every code's norm); returns the image count.
        Called by the first search; call it ahead to take the cost when you choose."""
        vec = self.vectors()
        vec.prepare()
        return vec.count

    def _query_vectors(self, query: str | os.PathLike[str]):
        """The query's code, features, stored slot (if any), and whether they came from
        the index."""
        qpath = Path(query).expanduser()
        try:
            rel = qpath.resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            rel = None
        if qpath.is_dir():
            raise SearchError(f"the query is a folder, not an image: {query}")
        if not qpath.is_file():
            raise SearchError(f"query image not found: {query}")
        if rel is not None and not self.follow_links and not inside(qpath, self.root):
            rel = None  # reached through a link out of the folder: not the stored file
        if rel is not None:
            found = self.store.slot_of(rel)
            if found is not None and found[1] is not None:
                st = qpath.stat()
                if found[0].size == st.st_size and found[0].mtime_ns == st.st_mtime_ns:
                    vec = self.vectors()
                    slot = found[1]
                    if 0 <= slot < vec.snap.slots:
                        code = np.asarray(vec.snap.codes[slot], np.float32)
                        feats = (
                            None
                            if vec.snap.features is None
                            else np.asarray(vec.snap.features[slot], np.float32)
                        )
                        return code, feats, slot, True
        try:
            size = self.input_size
            pixels = guarded(lambda: square_pixels(open_image(qpath, draft_size=size), size))
        except ImageError as exc:
            raise SearchError(f"cannot use query {query}: {exc}") from None
        from engine.indexer import _encode

        codes, feats = _encode(self.encoder, pixels[None])
        return codes[0], None if feats is None else feats[0], None, False

    def search(
        self,
        query: str | os.PathLike[str],
        num_results: int = 10,
        exact: bool = False,
        mode: str | None = None,
    ) -> SearchResult:
        """Like :meth:`find_similar_images`, with how the answer was found."""
        if num_results < 1:
            raise SearchError("num_results must be at least 1")
        t0 = time.perf_counter()
        code, feats, slot, reused = self._query_vectors(query)
        result = self._search(code, feats, num_results, "exact" if exact else mode, slot)
        return SearchResult(
            result.matches,
            result.mode,
            result.candidates,
            result.indexed,
            time.perf_counter() - t0,
            reused,
            result.reranked,
        )

    def search_code(
        self,
        code: np.ndarray,
        num_results: int = 10,
        exact: bool = False,
        exclude: str | None = None,
        features: np.ndarray | None = None,
        mode: str | None = None,
    ) -> SearchResult:
        """Search with a code (and features) you already have; *exclude* is a stored path
        to leave out."""
        slot = None
        if exclude is not None:
            found = self.store.slot_of(exclude)
            slot = found[1] if found is not None else None
        return self._search(code, features, num_results, "exact" if exact else mode, slot)

    def _search(self, code, feats, k: int, mode: str | None, exclude: int | None) -> SearchResult:
        t0 = time.perf_counter()
        mode = mode or self.settings.search_mode
        for attempt in range(3):
            vec = self.vectors()
            if self._centre is None or vec.count == 0:
                return SearchResult([], "exact", 0, vec.count, time.perf_counter() - t0, False)

            def key(code=code):
                return self.band_keys(np.asarray(code, np.float32)[None])[0]

            scored = vec.search(code, feats, key, k, self.planner, mode, exclude)
            try:
                paths = self.store.paths_of(scored.slots)
            except SnapshotMoved:
                self.committed()  # compacted meanwhile: look again
                if attempt == 2:  # every time: no writer, a record missing for good
                    raise self.store.damaged("image records and vectors disagree") from None
                continue
            kept = [(p, s) for p, s in zip(paths, scored.scores) if self._may_show(p)]
            matches = [
                Match(p, float(np.clip(s, -1.0, 1.0)), rank + 1) for rank, (p, s) in enumerate(kept)
            ]
            return SearchResult(
                matches,
                scored.mode,
                scored.candidates,
                vec.count,
                time.perf_counter() - t0,
                False,
                scored.reranked,
            )
        raise AssertionError("unreachable")

    def check_stored_path(self, path: str) -> None:
        """Refuse a stored *path* that is absolute or climbs out of the root: only a
        crafted or damaged index holds one (the damaged-index message)."""
        why = check_relpath(path)
        if why is not None:
            raise IndexDamaged(str(self.index_path), f"{why}: {printable(path)}", str(self.root))

    def may_open(self, path: str) -> bool:
        """Whether a stored, checked *path* may be opened (not through a link that leads out
        of the root, unless ``follow_links``)."""
        return self.follow_links or inside(self.root / path, self.root)

    def _may_show(self, path: str) -> bool:
        """Whether a stored *path* may be returned, shown and opened.

        A path that is absolute or climbs out of the root means a crafted or damaged
        index: an error. One that resolves out of the root through a symbolic link is
        left out unless ``follow_links`` (the walk would not have indexed it).
        """
        self.check_stored_path(path)
        return self.may_open(path)

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


def _checked_meta(store) -> dict:
    """The index's metadata, every value checked for type and range before it is used
    to size anything (a crafted ``hash_dim`` of 1e9 must not allocate terabytes)."""
    return _checked_meta_values(store, store.get_meta())


def _checked_meta_values(store, meta: dict) -> dict:
    from engine.backbones import BACKBONES

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
    if not isinstance(meta.get("weights_id"), (str, type(None))):
        raise store.damaged("weights_id is not text")
    for key, size in (("centre", meta["hash_dim"]), ("centre_features", meta["feature_dim"])):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) != size:
            raise store.damaged(f"the {key.replace('_', ' ')} does not have {size} values")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise store.damaged(f"the {key.replace('_', ' ')} holds values that are not numbers")
        if not np.isfinite(np.asarray(value, np.float64)).all():
            raise store.damaged(f"the {key.replace('_', ' ')} holds values that are not finite")
    return meta
