"""Rewriting an embedded index's arrays whole (writer only): band keys for a new centre,
the sorted LSH tables, compaction. Each writes new generation files in full, switches to
them in one transaction, then removes the old ones (readers that still map them keep
reading them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.storage.sqlite.arrays import KEY_DTYPE, LSH_STEP, SLOT_DTYPE

if TYPE_CHECKING:
    from engine.storage.sqlite import SQLiteStore


def band_keys(store: SQLiteStore, band_keys: np.ndarray, meta: dict) -> None:
    """Replace every slot's band keys (after the centre moved) and the metadata that
    goes with them, at once."""
    old = store.get_meta()
    old_band = store.arrays.gens(old)[1]
    gen = old_band + 1
    path = store.arrays.file("bands", gen)
    store.arrays.write_whole(path, np.asarray(band_keys, KEY_DTYPE))
    with store.transaction(write=True) as db:
        store.put_meta(db, {**meta, "band_gen": gen, "lsh_base": 0})
    store.arrays.remove(store.arrays.file("bands", old_band))
    lsh_tables(store)


def lsh_tables(store: SQLiteStore) -> None:
    """Sort every live slot's band keys, one row per band, so a query finds its
    buckets by binary search; slots added later are scanned until the next build."""
    snap = store.snapshot()
    meta = snap.meta
    live = np.ones(snap.slots, bool)
    live[snap.dead] = False
    slots = np.flatnonzero(live).astype(SLOT_DTYPE)
    bands = snap.band_keys.shape[1]
    keys = np.empty((bands, len(slots)), KEY_DTYPE)
    order_slots = np.empty((bands, len(slots)), SLOT_DTYPE)
    for b in range(bands):
        col = np.asarray(snap.band_keys[slots, b])
        order = np.argsort(col, kind="stable")
        keys[b] = col[order]
        order_slots[b] = slots[order]
    old_gen = store.arrays.gens(meta)[2]
    gen = old_gen + 1
    store.arrays.write_whole(store.arrays.file("lsh-keys", gen), keys)
    store.arrays.write_whole(store.arrays.file("lsh-slots", gen), order_slots)
    store.arrays.write_whole(
        store.arrays.file("lsh-fences", gen), np.ascontiguousarray(keys[:, ::LSH_STEP])
    )
    with store.transaction(write=True) as db:
        store.put_meta(db, {"lsh_gen": gen, "lsh_base": snap.slots, "lsh_live": len(slots)})
    store.arrays.remove(
        *(store.arrays.file(k, old_gen) for k in ("lsh-keys", "lsh-slots", "lsh-fences"))
    )


def compact(store: SQLiteStore) -> int:
    """Rewrite the arrays without dead slots; returns how many slots were dropped."""
    snap = store.snapshot()
    if not len(snap.dead):
        return 0
    meta = snap.meta
    live = np.ones(snap.slots, bool)
    live[snap.dead] = False
    keep = np.flatnonzero(live)
    vec, band, _ = (g + 1 for g in store.arrays.gens(meta))
    store.arrays.write_whole(store.arrays.file("codes", vec), np.asarray(snap.codes[keep]))
    if snap.features is not None:
        store.arrays.write_whole(
            store.arrays.file("features", vec), np.asarray(snap.features[keep])
        )
    store.arrays.write_whole(store.arrays.file("bands", band), np.asarray(snap.band_keys[keep]))
    with store.transaction(write=True) as db:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS remap (old INTEGER PRIMARY KEY, new INTEGER)")
        db.execute("DELETE FROM remap")
        db.executemany(
            "INSERT INTO remap (old, new) VALUES (?, ?)",
            zip(keep.tolist(), range(len(keep))),
        )
        db.execute("UPDATE images SET slot = -1 - slot WHERE slot IS NOT NULL")
        db.execute(
            "UPDATE images SET slot = (SELECT new FROM remap WHERE old = -1 - images.slot)"
            " WHERE slot IS NOT NULL"
        )
        db.execute("DELETE FROM dead")
        store.put_meta(db, {"slots": len(keep), "vec_gen": vec, "band_gen": band, "lsh_base": 0})
    store.arrays.remove(
        store.arrays.file("codes", vec - 1),
        store.arrays.file("features", vec - 1),
        store.arrays.file("bands", band - 1),
    )
    lsh_tables(store)
    return int(snap.slots - len(keep))
