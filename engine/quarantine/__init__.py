"""Setting files aside, and putting them back: moves with a record, never deletes.

:func:`plan` says what a move would do (the files, and how many under each top-level
folder) without touching anything: ``--dry-run`` prints it and the app shows it before
asking. :func:`move_aside` moves files of ROOT into a folder (by default the app's
quarantine, ``ROOT/.lookalike/quarantine``), keeping their paths relative to ROOT, and
writes every move to a record under ``ROOT/.lookalike/moves/`` *before* it happens
(flushed to disk) and again once done. :func:`undo` reads the newest record not yet
undone and moves every file back.

Rules: nothing is ever deleted but lookalike's own copies (a move across file systems
copies into a hidden ``.NAME.lookalike-part`` beside the destination, checks size and
SHA-256, renames it into place, and only then removes the original); nothing is moved
from outside ROOT, nor anywhere but into the named folder; nothing is overwritten (a
file already at the destination is skipped, with the reason; renames never replace).
Moving a symbolic link moves the link, never what it points at. A move that would move
nothing writes no record.

**The index folder is a sandbox** (:mod:`engine.sandbox`): the quarantine, its
sub-folders and ``moves/`` are opened by descriptor without following links, so a
crafted ``.lookalike/`` cannot send a file, or a record, out of ROOT. Inside ROOT, a
file's folder is reached by its real path, which must stay inside ROOT and out of
``.lookalike/``.

**Kept means kept, whatever the path** (:class:`Keep`). The pictures that stay (each
group's keeper, the kept copies) and the kept folders are compared with what would move
by real location: a folder link inside ROOT (``alias -> orig``) makes ``alias/x.png``
the very file ``orig/x.png``, and a kept link ``keep/a.png -> ../b.png`` needs ``b.png``;
neither is moved.

**A record cannot be turned against the user.** Records live in the indexed folder,
where anyone who can write a file can write one. Each line of a record carries an
HMAC made with a key of this user's own (``~/.cache/lookalike/moves.key``, created on
first use, readable by the user only), over the record's random nonce, the line's
number and its content. :func:`undo` accepts a record only if every line verifies and
it was written for this ROOT: a crafted record, one from another user or machine, or
one altered in any way is refused and renamed ``*.refused`` (kept, for the user to
read), so that older moves stay undoable. Even a genuine record only ever brings files
back to paths inside ROOT, never into ``.lookalike/``, and takes them from the folder
it names, reached the way it was reached when the files moved.

**A crash at any moment leaves a state undo finishes.** For each planned file: the
original still in place and nothing at the destination, left alone; both in place, the
destination (or a ``.lookalike-part`` beside it) is removed only when its bytes are the
original's or a beginning of them (a copy interrupted), otherwise both are kept and
reported; only the destination, it is moved back. Files that are nowhere do not block
the record: it is closed with them listed, so older moves stay undoable. A last line cut
short by a kill is ignored (a planned move is written, and flushed, before it starts).

**A destination inside ROOT** is recorded in the index as excluded from walks
(``excluded``), so moved files are never indexed, grouped or moved again; undoing the
last move into it takes it off that list, so the folder is indexed as before.

Where each part lives: ``common`` (the plan, the report, what stays, where moves go),
``records`` (move records and the key that signs them), ``files`` (reaching a file's
folder inside ROOT, moving one file), ``moves`` (moving aside, undoing, and both
through an index).
"""

from engine.errors import MoveError
from engine.quarantine.common import (
    MOVES,
    QUARANTINE,
    Keep,
    MovePlan,
    MoveReport,
    destination,
    excluded,
    plan,
)
from engine.quarantine.files import move_file
from engine.quarantine.moves import (
    move_aside,
    move_within,
    pending_manifest,
    relabel,
    set_aside,
    undo,
    undo_latest,
)

__all__ = [
    "MOVES",
    "QUARANTINE",
    "Keep",
    "MoveError",
    "MovePlan",
    "MoveReport",
    "destination",
    "excluded",
    "move_aside",
    "move_file",
    "move_within",
    "pending_manifest",
    "plan",
    "relabel",
    "set_aside",
    "undo",
    "undo_latest",
]
