"""Words for scores: what a similarity means depends on the collection.

A cosine of 0.65 is a close match among Fashion-MNIST's look-alike garments; 0.22 was the
best match a clip-art picture had. So, but for the first, the words are set by the
collection itself: a few dozen of its pictures (a fixed sample) are searched, and a
result is placed among their 10th matches (the 10th, not the first: a collection full of
copies would otherwise set its bars on the copies):

* ``near copy`` — 0.90 or more, whatever the collection: 44 to 86 % of edited copies
  score there on held-out copy sets, and no single picture's best match did on clip-art
  or photographs (a picture held twice, or re-encoded, scores 0.97 and up);
* ``very similar`` — closer than the 10th match of 90 % of the sampled pictures;
* ``similar`` — closer than the typical (median) 10th match;
* ``related`` — below that.

Whether two pictures really are copies is for triage to decide (it verifies with local
features); the words only place a score, but for a pair triage verified: that is called
``copy`` (:func:`word_for`). How well they place it is measured by
``python -m benchmarks.run --only labels`` (figures in docs/BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch

#: Pictures searched to learn the collection's scale (a fixed random sample).
SAMPLE = 48
#: Results per sampled picture: the 10th gives the "similar" bar.
DEPTH = 10
#: A "near copy" scores at least this (measured: see the module's notes).
COPY = 0.90
#: The share of sampled 10th matches a "very similar" result must beat.
CLOSE_QUANTILE = 0.90
WORDS = ("near copy", "very similar", "similar", "related")


@dataclass(frozen=True)
class ScoreScale:
    """The collection's bars, highest first: near copy, very similar, similar."""

    copy: float
    close: float
    typical: float

    def label(self, score: float) -> str:
        for word, bar in zip(WORDS, (self.copy, self.close, self.typical)):
            if score >= bar:
                return word
        return WORDS[-1]


@dataclass(frozen=True)
class KnownCopies:
    """Path -> {path of a verified copy: why}; both ways round."""

    by_path: dict[str, dict[str, str]] = field(default_factory=dict)
    from_triage: bool = False  # a triage's evidence was there (else identical bytes only)

    def why(self, a: str | None, b: str) -> str | None:
        """Why *b* is a copy of *a*, or None when it is not known to be one."""
        return self.by_path.get(a, {}).get(b) if a is not None else None


def word_for(
    scale: ScoreScale | None,
    known: KnownCopies | None,
    query: str | None,
    path: str,
    score: float,
) -> tuple[str, str]:
    """The word beside a result's score, and triage's reason when it is a verified copy
    of the query (:mod:`engine.triage.known`): ``("copy", why)``; else the collection's
    word for the score ("" before the scale is known) and no reason."""
    why = known.why(query, path) if known is not None else None
    if why is not None:
        return "copy", why
    return (scale.label(score) if scale is not None else ""), ""


def measure(
    search: ImageSimilaritySearch, sample: int = SAMPLE, seed: int = 0
) -> ScoreScale | None:
    """The scale of *search*'s collection, from the stored codes of *sample* of its
    pictures (no CNN, no file opened); None when it holds too few pictures to say."""
    vec = search.vectors()
    slots = np.flatnonzero(vec.live)
    if len(slots) <= DEPTH:
        return None
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(slots, min(sample, len(slots)), replace=False))
    paths = search.store.paths_of(picked)
    feats = vec.snap.features
    tenth = []
    for slot, path in zip(picked, paths):
        code = np.asarray(vec.snap.codes[slot], np.float32)
        f = None if feats is None else np.asarray(feats[slot], np.float32)
        found = search.search_code(code, DEPTH, exclude=path, features=f).matches
        if len(found) == DEPTH:
            tenth.append(found[-1].score)
    if not tenth:
        return None
    close = min(float(np.quantile(tenth, CLOSE_QUANTILE)), COPY)
    return ScoreScale(COPY, close, min(float(np.median(tenth)), close))
