"""Index a folder and find lookalikes: the engine's front door, a thin façade.

``ImageSimilaritySearch(root).index()`` brings the index up to date;
``find_similar_images(query, num_results)`` answers queries. Both can run at once from
different threads (the app searches while it indexes): searches see every batch
committed so far (:mod:`engine.live`). The work is done elsewhere:

* :mod:`engine.storage` — where the index lives (``open_index``);
* :mod:`engine.identity` — the index's settings, reconciled with the asked ones;
* :mod:`engine.encoding` — the CNN;
* :mod:`engine.indexer` — walk, decode, encode, commit;
* :mod:`engine.vectors` — exact scoring, LSH candidates, the planner, re-ranking.

How a query is answered: its code and features (the stored ones when the query is an
indexed, unchanged file: no CNN), then :meth:`engine.vectors.VectorIndex.search`. The
query never matches itself, and always gets ``min(num_results, N-1)`` results.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np

from engine import identity as identities
from engine.errors import IndexMismatch, SearchError
from engine.images import ImageError, SkippedFile, guarded, inside, open_image, square_pixels
from engine.live import LiveView
from engine.names import check_relpath, first_bad_relpath, printable
from engine.results import IndexStats, Match, Progress, SearchResult
from engine.settings import Settings, SettingsError
from engine.storage import IndexBusy, IndexDamaged, IndexFileError, SnapshotMoved, open_index
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
        self.settings = settings
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SearchError(f"not a folder: {root}")
        self.root = self.root.resolve()
        if settings.weights is not None and not Path(settings.weights).expanduser().is_file():
            raise SearchError(f"weights file not found: {settings.weights}")  # before the index
        self.follow_links = settings.follow_links
        if rebuild and encoder is None:
            # a rebuild that cannot encode (bad weights) must not empty the index first
            fresh = identities.reconcile(settings, {}, "", self.root)
            encoder = _build_encoder(settings, fresh)
        self.store = open_index(
            settings.store, str(self.root), index_path or settings.index_path, rebuild
        )
        #: where the index is, for messages: a path, or a URL without its password
        self.index_path = self.store.location
        meta = identities.checked_meta(self.store)
        self.identity = identities.reconcile(settings, meta, self.index_path, self.root)
        self.view = LiveView(self.store, self.identity, meta)
        self.planner = Planner()
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._identity_checked = False

    @property
    def backbone(self) -> str:
        return self.identity.backbone

    # --- encoder --------------------------------------------------------------------

    @property
    def encoder(self):
        """The CNN, built on first use (importing torch and loading weights takes seconds)
        and checked against the index's identity."""
        return self.load_encoder()

    def load_encoder(self, on_step=None):
        """:attr:`encoder`, with *on_step* told of each way of running the CNN timed
        while it is built (the first run on a machine; see
        :data:`engine.encoding.chooser.StepCallback`)."""
        with self._encoder_lock:
            if self._encoder is None:
                enc = _build_encoder(self.settings, self.identity, on_step)
                self._check_encoder(enc)
                self._encoder = enc
            elif not self._identity_checked:
                self._check_encoder(self._encoder)
            return self._encoder

    def _check_encoder(self, enc) -> None:
        identities.check_encoder(self.store.get_meta(), enc, self.index_path, self.root)
        self._identity_checked = True

    def describe(self) -> str:
        """Backbone and device, for status lines."""
        return self._encoder.describe() if self._encoder is not None else self.backbone

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
        from engine.indexer import IndexContext, Indexer

        started = time.perf_counter()
        cancel = cancel or threading.Event()
        stats = IndexStats(
            backbone=self.backbone, index_path=str(self.index_path), store=self.store.kind
        )
        indexer = Indexer(
            IndexContext(self.root, self.settings, self.identity, self.view, self.load_encoder)
        )
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
        """Files that could not be indexed, with why; a crafted path is the damaged-index
        error, one that leads out through a link is left out (:meth:`openable`)."""
        found = self.store.failures()
        bad = first_bad_relpath([p for p, _ in found])
        if bad is not None:
            self.check_stored_path(found[bad][0])
        shown = self.openable([p for p, _ in found])
        return [SkippedFile(p, e or "failed") for (p, e), ok in zip(found, shown) if ok]

    def vectors(self) -> VectorIndex:
        """The current searchable view (:meth:`engine.live.LiveView.vectors`)."""
        return self.view.vectors()

    def load(self) -> int:
        """Read what the first search needs (every code's norm); returns the image count.
        Called by the first search; call it ahead to take the cost when you choose."""
        vec = self.vectors()
        vec.prepare()
        return vec.count

    def _query_vectors(self, query: str | os.PathLike[str]):
        """The query's code, features, stored slot and stored path: the stored ones when
        *query* is an indexed, unchanged file (no CNN), else encoded now (slot and path
        None)."""
        qpath = Path(query).expanduser()
        if qpath.is_dir():
            raise SearchError(f"the query is a folder, not an image: {query}")
        if not qpath.is_file():
            raise SearchError(f"query image not found: {query}")
        stored = self._stored_vectors(qpath)
        if stored is not None:
            return stored
        try:
            size = self.identity.input_size
            pixels = guarded(lambda: square_pixels(open_image(qpath, draft_size=size), size))
        except ImageError as exc:
            raise SearchError(f"cannot use query {query}: {exc}") from None
        from engine.encoding import encode_batch

        codes, feats = encode_batch(self.encoder, pixels[None])
        return codes[0], None if feats is None else feats[0], None, None

    def _stored_vectors(self, qpath: Path):
        try:
            rel = qpath.resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return None
        if not self.follow_links and not inside(qpath, self.root):
            return None  # reached through a link out of the folder: not the stored file
        found = self.store.slot_of(rel)
        if found is None or found[1] is None:
            return None
        st = qpath.stat()
        vec, slot = self.vectors(), found[1]
        if (found[0].size, found[0].mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        if not 0 <= slot < vec.snap.slots:
            return None
        feats = vec.snap.features
        code = np.asarray(vec.snap.codes[slot], np.float32)
        return code, None if feats is None else np.asarray(feats[slot], np.float32), slot, rel

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
        code, feats, slot, rel = self._query_vectors(query)
        mode = "exact" if exact else mode
        found = self._search(code, feats, num_results, mode, slot, t0, reused=slot is not None)
        return dataclasses.replace(found, query_path=rel)

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
        found = self.store.slot_of(exclude) if exclude is not None else None
        slot = found[1] if found is not None else None
        mode = "exact" if exact else mode
        return self._search(code, features, num_results, mode, slot, time.perf_counter())

    def _search(self, code, feats, k, mode, exclude, t0: float, reused=False) -> SearchResult:
        mode = mode or self.settings.search_mode
        for attempt in range(3):
            vec = self.vectors()
            if self.view.centre is None or vec.count == 0:
                return SearchResult([], "exact", 0, vec.count, time.perf_counter() - t0, reused)

            def key(code=code):
                return self.view.band_keys(np.asarray(code, np.float32)[None])[0]

            scored = vec.search(code, feats, key, k, self.planner, mode, exclude)
            try:
                paths = self.store.paths_of(scored.slots)
            except SnapshotMoved:
                self.view.committed()  # compacted meanwhile: look again
                if attempt == 2:  # every time: no writer, a record missing for good
                    raise self.store.damaged("image records and vectors disagree") from None
                continue
            kept = [(p, s) for p, s in zip(paths, scored.scores) if self._may_show(p)]
            matches = [Match(p, float(np.clip(s, -1, 1)), n + 1) for n, (p, s) in enumerate(kept)]
            seconds = time.perf_counter() - t0
            return SearchResult(
                matches, scored.mode, scored.candidates, vec.count, seconds, reused, scored.reranked
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

    def openable(self, paths: list[str]) -> list[bool]:
        """:meth:`may_open` for many stored, checked paths at once: each folder's real
        path is found once and its links listed once (one ``scandir``), then only a
        link is followed to its target. What is not openable is never listed either (a
        shared index holds other machines' paths, and a folder here may be a link out)."""
        if self.follow_links:
            return [True] * len(paths)
        root = str(self.root)
        folders: dict[str, set[str] | None] = {}  # folder -> its links (None: not inside)
        out = []
        for p in paths:
            head, _, name = p.rpartition("/")
            if head not in folders:
                folders[head] = _links_in(self.root / head) if (
                    not head or inside(self.root / head, root)
                ) else None  # fmt: skip
            links = folders[head]
            ok = links is not None and (name not in links or inside(self.root / p, root))
            out.append(ok)
        return out

    def _may_show(self, path: str) -> bool:
        """Whether a stored *path* may be returned, shown and opened: a crafted one is an
        error, one that leads out through a link is left out unless ``follow_links``."""
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


def _links_in(folder: Path) -> set[str]:
    """The names of the symbolic links in *folder* (none when it cannot be read)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_symlink()}
    except OSError:
        return set()


def _build_encoder(settings: Settings, ident: identities.Identity, on_step=None):
    """The CNN for *ident*, any failure as one line (:class:`SearchError`)."""
    from engine.encoding import build_encoder
    from engine.encoding.backbones import EncoderError

    runtime = settings.runtime
    if ident.precision == "bf16" and ident.runtime:
        if runtime not in ("auto", ident.runtime):
            raise IndexMismatch(
                f"the index was made by {ident.runtime} in bf16, whose features differ from"
                f" {runtime}'s bf16 by up to 0.025: leave out --runtime, or run lookalike"
                " index DIR --rebuild"
            )
        runtime = ident.runtime
    try:
        return build_encoder(
            ident.hash_dim,
            ident.backbone,
            on_step,
            weights=settings.weights,
            device=settings.device,
            precision=ident.precision,
            runtime=runtime,
            input_size=ident.input_size,
        )
    except EncoderError as exc:
        raise SearchError(str(exc)) from None
