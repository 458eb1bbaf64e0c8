"""Every key of the app, in one table: the bindings, the command palette and the ``?``
help screen are all made from it, so they cannot disagree.

A :class:`Key` belongs to a *place* (the main screen, the results grid, the triage
screen, ...). ``bindings(place)`` gives a place's Textual bindings; ``palette()`` the
actions worth finding by name; ``help_rows()`` every key, grouped by place.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    place: str  # "app", "search", "tree", "results", "triage", "compare", "confirm"
    keys: str  # Textual key names, comma-separated
    action: str
    label: str  # the footer's word ("" keeps it out of the footer)
    help: str  # one line for the help screen and the palette
    shown: str = ""  # how the help screen writes the keys (default: from ``keys``)
    palette: str = ""  # the palette's title for this action ("" keeps it out)


KEYS: tuple[Key, ...] = (
    Key("tree", "j", "cursor_down", "", "move down in the tree", "↓ / j"),
    Key("tree", "k", "cursor_up", "", "move up in the tree", "↑ / k"),
    Key("tree", "enter", "", "", "search with the image, or open/close the folder", "enter"),
    Key("results", "left,h", "move(-1, 0)", "", "previous result", "← / h"),
    Key("results", "right,l", "move(1, 0)", "", "next result", "→ / l"),
    Key("results", "up,k", "move(0, -1)", "", "result above", "↑ / k"),
    Key("results", "down,j", "move(0, 1)", "", "result below", "↓ / j"),
    Key("results", "enter", "choose", "", "make that match the new query (a click selects)"),
    # The search screen's footer: the keys that matter first, so 80 columns show them.
    Key("search", "tab", "", "", "move between the tree and the results", "tab / shift+tab"),
    Key(
        "search",
        "z",
        "compare",
        "Compare",
        "the query and the highlighted result side by side, as large as the terminal allows",
        "z",
        "Compare with the query",
    ),
    Key(
        "search",
        "d",
        "app.triage",
        "Triage",
        "groups of copies (mirrored, cropped, re-encoded...), outliers, broken files",
        "d",
        "Triage",
    ),
    Key(
        "search",
        "slash",
        "filter",
        "Filter",
        "filter the tree by path; enter keeps it, escape (here or in the tree) clears it",
        "/",
        "Filter tree",
    ),
    Key(
        "search",
        "x",
        "toggle_exact",
        "Exact",
        "exact search (score every image) or auto (LSH where it is sure); says what changed",
        "x",
        "Toggle exact search",
    ),
    Key(
        "search",
        "s",
        "sort",
        "",
        "sort the results by score, path or file size",
        "s",
        "Sort results",
    ),
    Key(
        "search",
        "e",
        "export",
        "Export",
        "write the results as JSON and CSV next to the index (the path is shown)",
        "e",
        "Export results",
    ),
    Key(
        "search",
        "o",
        "open",
        "",
        "open the highlighted picture with the system's viewer (local sessions)",
        "o",
        "Open in viewer",
    ),
    Key("search", "left_square_bracket", "fewer", "", "one result fewer", "[", "Fewer results"),
    Key("search", "right_square_bracket", "more", "", "one result more", "]", "More results"),
    Key(
        "search",
        "backspace",
        "back",
        "",
        "back to the previous query",
        "backspace",
        "Previous query",
    ),
    Key(
        "search",
        "c",
        "copy_path",
        "",
        "send the highlighted path to the clipboard (OSC 52: works over SSH where the"
        " terminal accepts it)",
        "c",
        "Copy path",
    ),
    Key(
        "search",
        "f",
        "app.failures",
        "",
        "files that could not be indexed, with the reason",
        "f",
        "Skipped files",
    ),
    Key("app", "question_mark", "help", "Help", "the keys of this screen", "?", "Help: keys"),
    Key("app", "q", "quit", "Quit", "quit (indexing stops; what is committed is kept)"),
    Key(
        "app",
        "i",
        "reindex",
        "",
        "re-scan the folder and update the index",
        "i",
        "Re-index",
    ),
    Key(
        "app",
        "ctrl+x",
        "cancel_index",
        "",
        "stop the running index (what is done is kept)",
        "ctrl+x",
        "Cancel indexing",
    ),
    Key("app", "ctrl+p", "", "", "command palette: every action by name", "ctrl+p"),
    Key("triage", "escape", "close", "Back", "back to searching"),
    Key("triage", "up", "move(0, -1)", "", "previous row", "↑"),
    Key("triage", "down", "move(0, 1)", "", "next row", "↓"),
    Key("triage", "left", "move(-1, 0)", "", "previous picture of the row", "←"),
    Key("triage", "right", "move(1, 0)", "", "next picture of the row (rows scroll)", "→"),
    Key("triage", "pageup", "page(-1)", "", "a screenful of rows up", "PageUp"),
    Key("triage", "pagedown", "page(1)", "", "a screenful of rows down", "PageDown"),
    Key("triage", "home", "edge(False)", "", "the first row", "Home"),
    Key("triage", "end", "edge(True)", "", "the last row", "End"),
    Key("triage", "1", "section(1)", "", "copies (each section's count is in the bar)", "1"),
    Key("triage", "2", "section(2)", "", "outliers", "2"),
    Key("triage", "3", "section(3)", "", "broken files", "3"),
    Key("triage", "4", "section(4)", "", "leaks (with --against TEST)", "4"),
    Key("triage", "5", "section(5)", "", "suspected wrong labels", "5"),
    Key("triage", "6", "section(6)", "", "pictures hard to learn from", "6"),
    Key("triage", "tab", "section(0)", "", "the next section", "tab"),
    Key("triage", "shift+tab", "section(-1)", "", "the previous section", "shift+tab"),
    Key("triage", "space", "mark", "Mark", "mark or unmark a copy (or a leak's copy) to set aside"),
    Key("triage", "a", "mark_group", "", "mark or unmark every copy of the group"),
    Key("triage", "A", "mark_all", "", "mark or unmark every copy of every group", "shift+a"),
    Key(
        "triage",
        "m",
        "move_marked",
        "Set aside",
        "show the plan, then move the marked into .lookalike/quarantine (with a record)",
    ),
    Key("triage", "u", "undo", "Undo", "put back the last files set aside"),
    Key(
        "triage",
        "k",
        "keep",
        "Keep",
        "keep the highlighted picture instead: its group is made again around it"
        " (remembered, the command line included)",
    ),
    Key("triage", "z", "compare", "Compare", "the highlighted copy beside its keeper, large"),
    Key(
        "triage",
        "n",
        "not_duplicate",
        "",
        "not a copy of its group's keeper (never grouped again), or not a leak",
    ),
    Key(
        "triage",
        "l",
        "relabel",
        "",
        "a suspected wrong label: move it to the folder it looks like it belongs in (u undoes it)",
    ),
    Key(
        "triage",
        "plus",
        "threshold(1)",
        "",
        "group only copies at least 0.05 more visually similar (from the rule's own)",
        "+",
    ),
    Key(
        "triage",
        "minus",
        "threshold(-1)",
        "",
        "lower the threshold by 0.05, down to the rule's",
        "-",
    ),
    Key("triage", "enter", "search", "", "search with that image"),
    Key(
        "confirm", "enter,y", "answer(True)", "Move", "yes: move the files as planned", "enter / y"
    ),
    Key("confirm", "escape,n", "answer(False)", "Cancel", "no: move nothing", "escape / n"),
    Key("compare", "escape,z", "close", "Back", "back to the results", "escape / z"),
    Key("compare", "left,h,up,k", "move(-1)", "", "previous result", "← / h"),
    Key("compare", "right,l,down,j", "move(1)", "", "next result", "→ / l"),
    Key("compare", "enter", "search", "Search this", "search with the result shown"),
)

#: Where each place's keys are described on the help screen, in order.
PLACES = {
    "search": "searching",
    "tree": "the file tree",
    "results": "the results",
    "triage": "triage",
    "compare": "compare",
    "confirm": "a move's plan",
    "app": "everywhere",
}


def bindings(place: str) -> list[BindingType]:
    """The Textual bindings of *place* (keys the widget handles itself are left out)."""
    return [
        Binding(k.keys, k.action, k.label or k.help, show=bool(k.label))
        for k in KEYS
        if k.place == place and k.action
    ]


def palette() -> list[Key]:
    """The app's actions that the command palette lists by name."""
    return [k for k in KEYS if k.palette]


def help_rows(places: tuple[str, ...] = tuple(PLACES)) -> list[tuple[str, str, str]]:
    """(place heading, keys as shown, what they do) of *places*, for the help screen."""
    rows = []
    for place in places:
        for k in KEYS:
            if k.place == place:
                rows.append((PLACES[place], k.shown or k.keys.replace(",", " / "), k.help))
    return rows
