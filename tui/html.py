"""``lookalike triage DIR --html FILE``: the triage as one page to share.

One self-contained HTML file: the pictures are embedded (small JPEGs as ``data:`` URIs),
the style is inline, and there is no script at all, so the page reads the same from a
mail attachment, a shared folder or a browser with JavaScript off, with no server and no
request made. What it shows: the groups of copies (keeper first, each copy with its
reason), leaks between DIR and TEST, suspected wrong labels beside their neighbours,
classes confused as a rule, unusable pictures with their flags, outliers and broken
files with their reasons.

Everything that came from the disk (paths, reasons, folder names) is escaped twice over:
control characters and undecodable bytes as in plain output (:func:`printable`), then
HTML's own characters. A Content-Security-Policy in the page forbids scripts, frames and
any load but its own embedded pictures, should anything ever slip through. Pictures are
opened only where the app would open them: never through a link that leads out of the
folder (unless ``--follow-links``). Past :data:`PICTURES_MAX` pictures the rest are
listed by name: a report of a large collection stays a file a browser opens.

The file is written beside its final name and renamed over it: a page half-written by a
killed run is never left, and a link at that name is replaced, not written through.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.images import ImageError, guarded, inside, open_image
from engine.names import count, printable

#: Longest side of an embedded picture, in pixels, and its JPEG quality: about 3 KB each.
SIDE = 112
QUALITY = 80
#: Pictures shown of each pair of classes confused as a rule.
CONFUSED_SHOWN = 6
#: Pictures embedded at most (about 3 KB each: some 15 MB); the rest are named only.
PICTURES_MAX = 5000

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;
border-bottom:1px solid #ccc}p.meta{color:#555;margin:.2em 0}
nav a{margin-right:1em}.row{display:flex;flex-wrap:wrap;gap:8px;margin:.4em 0 1em;
padding:.5em;background:#fff;border:1px solid #ddd;border-radius:6px}
.row h3{flex-basis:100%;font-size:1em;margin:0}
figure{margin:0;width:128px;font-size:12px;overflow-wrap:anywhere}
figure img,figure .none{display:block;width:112px;height:112px;object-fit:contain;
background:#eee;border:1px solid #ccc}figure .none{color:#777;font-size:11px;
text-align:center;line-height:112px}.keep figcaption b{color:#1a7f37}
.why{color:#555}.bad{color:#b42318}table{border-collapse:collapse}
td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee;font-size:13px}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def text(value: object) -> str:
    """A value from the disk or the index, fit for HTML: escaped as plain output does,
    then HTML's special characters (quotes included, for attributes)."""
    return html.escape(printable(value), quote=True)


class Pictures:
    """Embedded pictures, made in threads once per file, up to :data:`PICTURES_MAX`."""

    def __init__(self, roots: dict[str, Path], follow_links: bool) -> None:
        self.roots = {k: Path(os.path.realpath(v)) for k, v in roots.items()}
        self.follow_links = follow_links
        self.wanted: dict[tuple[str, str], str | None] = {}

    def want(self, where: str, path: str) -> None:
        if len(self.wanted) < PICTURES_MAX:
            self.wanted.setdefault((where, path), None)

    def make(self) -> None:
        keys = list(self.wanted)
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            for key, uri in zip(keys, pool.map(self._one, keys)):
                self.wanted[key] = uri

    def _one(self, key: tuple[str, str]) -> str | None:
        where, path = key
        root = self.roots[where]
        full = root / path
        if not self.follow_links and not inside(full, root):
            return None  # a link out of the folder: never opened
        try:
            im = open_image(full, draft_size=SIDE * 2)
            data = guarded(_jpeg, im)
        except ImageError:
            return None
        return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

    def figure(self, where: str, path: str, caption: str, cls: str = "") -> str:
        uri = self.wanted.get((where, path))
        name = text(path)
        img = f'<img src="{uri}" alt="{name}">' if uri else '<span class="none">no picture</span>'
        klass = f' class="{cls}"' if cls else ""
        return f"<figure{klass}>{img}<figcaption>{caption}<br>{name}</figcaption></figure>"


def _row(figs: list[str], head: str = "") -> str:
    """Pictures side by side in one box, under *head* (HTML, escaped already)."""
    return f'<div class="row">{head}{"".join(figs)}</div>'


def _jpeg(im) -> bytes:
    im = im.convert("RGB")
    im.thumbnail((SIDE, SIDE))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def page(report, root: Path, test_root: Path | None = None, follow_links: bool = False) -> str:
    """The whole page for *report* of the folder *root* (and TEST, *test_root*)."""
    roots = {"dir": root}
    if test_root is not None:
        roots["test"] = test_root
    pics = Pictures(roots, follow_links)
    for g in report.groups:
        for m in (g.representative, *g.members):
            pics.want("dir", m.path)
    for x in report.leaks:
        pics.want("test", x.other)
        pics.want("dir", x.path)
    for m in report.mislabeled:
        for p in (m.path, *m.neighbours):
            pics.want("dir", p)
    for c in report.confusions:
        for m in c.pictures[:CONFUSED_SHOWN]:
            pics.want("dir", m.path)
    for u in report.unusable:
        pics.want("dir", u.path)
    for o in report.outliers:
        pics.want("dir", o.path)
    pics.make()
    parts = [_head(report, root, test_root)]
    parts += _groups(report, pics)
    parts += _leaks(report, pics)
    parts += _labels(report, pics)
    parts += _unusable(report, pics)
    parts += _outliers(report, pics)
    parts += _broken(report)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _head(report, root: Path, test_root: Path | None) -> str:
    made = time.strftime("%Y-%m-%d %H:%M")
    against = f" against {text(test_root)}" if test_root is not None else ""
    counts = [
        ("groups", count(len(report.groups), "group of copies", "groups of copies")),
        ("leaks", count(len(report.leaks), "leak")),
        ("labels", count(len(report.mislabeled), "suspected wrong label")),
        ("unusable", count(len(report.unusable), "picture") + " hard to learn from"),
        ("outliers", count(len(report.outliers), "outlier")),
        ("broken", count(len(report.broken), "broken file")),
    ]
    nav = " ".join(f'<a href="#{k}">{v}</a>' for k, v in counts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>lookalike triage: {text(root.name or root)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>lookalike triage of {text(root)}{against}</h1>"
        f'<p class="meta">{count(report.images, "picture")}; '
        f"{count(report.duplicates, 'copy', 'copies')} could go; made {made}. "
        "Nothing was moved: <code>lookalike triage DIR --move-to FOLDER</code> does that, "
        "reversibly.</p>"
        f"<nav>{nav}</nav>"
    )


def _groups(report, pics: Pictures) -> list[str]:
    out = [f'<h2 id="groups">Groups of copies ({len(report.groups)})</h2>']
    for g in report.groups:
        rep = g.representative
        figs = [pics.figure("dir", rep.path, f"<b>keep</b> · {text(g.kept_because)}", "keep")]
        for m in g.members:
            kept = " · <b>in a kept folder</b>" if m.kept else ""
            why = text(m.described or ("identical bytes" if m.identical else ""))
            figs.append(
                pics.figure("dir", m.path, f'{m.score:.3f}{kept}<br><span class="why">{why}</span>')
            )
        out.append(_row(figs, f"<h3>group {g.id}</h3>"))
    return out


def _leaks(report, pics: Pictures) -> list[str]:
    if not report.leaks:
        return ['<h2 id="leaks">Leaks (0)</h2><p class="meta">none looked for, or none found</p>']
    out = [
        f'<h2 id="leaks">Leaks ({len(report.leaks)}): pictures of TEST that copy one of DIR</h2>'
    ]
    for x in report.leaks:
        a = pics.figure("test", x.other, f'<b class="bad">leak</b> {x.score:.3f}')
        b = pics.figure("dir", x.path, f'original<br><span class="why">{text(x.why)}</span>')
        out.append(_row([a, b]))
    return out


def _labels(report, pics: Pictures) -> list[str]:
    out = [f'<h2 id="labels">Suspected wrong labels ({len(report.mislabeled)})</h2>']
    for c in report.confusions:  # a few of each, the likeliest wrong first
        figs = [
            pics.figure("dir", m.path, f"filed under {text(m.folder)} · {m.confidence:.2f}")
            for m in c.pictures[:CONFUSED_SHOWN]
        ]
        more = f", the {CONFUSED_SHOWN} likeliest wrong shown" if c.count > CONFUSED_SHOWN else ""
        head = f"<h3>{text(c.text())} (confused as a rule, not listed one by one{more})</h3>"
        out.append(_row(figs, head))
    for m in report.mislabeled:
        head = (
            f"filed under <b>{text(m.folder)}</b>, looks like <b>{text(m.suggested)}</b>"
            f" · {m.confidence:.2f}"
        )
        figs = [pics.figure("dir", m.path, head, "keep")]
        figs += [pics.figure("dir", n, "neighbour") for n in m.neighbours]
        out.append(_row(figs))
    if report.labels_under_cut:
        more = count(report.labels_under_cut, "more picture")
        out.append(f'<p class="meta">{more} scored under the cut (--labels-min lowers it)</p>')
    return out


def _unusable(report, pics: Pictures) -> list[str]:
    out = [f'<h2 id="unusable">Hard to learn from ({len(report.unusable)})</h2>']
    figs = [
        pics.figure("dir", u.path, f'<b class="bad">{text(" ".join(u.flags))}</b>')
        for u in report.unusable
    ]
    if figs:
        out.append(_row(figs))
    return out


def _outliers(report, pics: Pictures) -> list[str]:
    out = [f'<h2 id="outliers">Outliers ({len(report.outliers)}): least like anything else</h2>']
    figs = [
        pics.figure("dir", o.path, f"nearest {o.score:.3f}: {text(o.neighbour)}")
        for o in report.outliers
    ]
    if figs:
        out.append(_row(figs))
    return out


def _broken(report) -> list[str]:
    out = [f'<h2 id="broken">Broken files ({len(report.broken)})</h2>']
    if report.broken:
        rows = "".join(
            f'<tr><td>{text(b.path)}</td><td class="bad">{text(b.reason)}</td></tr>'
            for b in report.broken
        )
        out.append(f"<table><tr><th>file</th><th>why</th></tr>{rows}</table>")
    return out


def write(path: str | os.PathLike[str], body: str) -> Path:
    """*body* written to *path*: beside it first, then renamed over it (never half a page,
    never through a link at that name)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".lookalike-", suffix=".html.part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
