"""What a triage finds, as plain data: groups of copies, outliers, broken files and the
data-set sections. The command line prints it (``--json``, ``--csv``, text) and the app
lays it out; :class:`engine.triage.session.TriageSession` keeps it current."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.images import SkippedFile
from engine.names import count as counted
from engine.quarantine import Keep
from engine.triage.dataset import Unusable


@dataclass(slots=True)
class Member:
    """A picture of a group (a plain slotted class: twenty thousand groups make forty
    thousand of these at every regroup, and a frozen dataclass is four times slower to
    make)."""

    path: str
    score: float  # visual similarity to the representative, or to *via* (1.0: identical)
    identical: bool  # byte-identical to the representative
    digest: bytes | None  # SHA-256 of the file's bytes
    pixels: int
    why: str = ""  # the evidence, in words ("mirrored copy · 212 matching points")
    kept: bool = False  # under a kept folder: never moved
    via: str = ""  # the member this one copies, when not the representative ("": it)

    @property
    def sha256(self) -> str | None:
        return self.digest.hex() if self.digest else None

    @property
    def described(self) -> str:
        """The evidence, and which copy it is a copy of when not the representative."""
        return f"{self.why} · a copy of {self.via}" if self.via else self.why


@dataclass
class Group:
    id: int
    representative: Member
    members: list[Member]  # the others, most similar first
    #: why the representative is the one kept, in words: "you chose it", "in a kept
    #: folder", "a file, not a link", "most pixels", "oldest", "shortest path", "first
    #: by name" (the first rule of the keeper order it wins by)
    kept_because: str = ""


@dataclass(frozen=True)
class Mislabel:
    path: str
    folder: str  # its label now
    suggested: str  # the most likely other label
    confidence: float  # the score: how likely its folder is wrong, in [0, 1]
    neighbours: tuple[str, ...] = ()  # its most similar voters, most similar first
    classifier: float = 0.0  # the classifier's probability of its folder
    vote: float = 0.0  # the share of its neighbours' votes for its folder


@dataclass(frozen=True)
class Confusion:
    """Two classes confused as a rule: how many candidates sit between them (filed under
    either, suggested the other), the most likely wrong first."""

    classes: tuple[str, str]
    pictures: tuple[Mislabel, ...]

    @property
    def count(self) -> int:
        return len(self.pictures)

    def text(self) -> str:
        a, b = self.classes
        n = self.count
        return f"{a} ↔ {b}: {counted(n, 'picture')} {'sits' if n == 1 else 'sit'} between these classes"


@dataclass(frozen=True)
class Leak:
    """A picture of TEST that copies one of DIR (``--against``)."""

    path: str  # in DIR (TRAIN)
    other: str  # in TEST
    score: float  # visual similarity (1.0 when identical)
    identical: bool
    why: str


@dataclass(slots=True)
class Outlier:
    path: str
    score: float  # visual similarity to its nearest neighbour
    neighbour: str


@dataclass
class TriageReport:
    threshold: float  # the visual similarity asked of a grouped pair (0: none, the rule's)
    groups: list[Group]
    outliers: list[Outlier]
    broken: list[SkippedFile]
    images: int
    seconds: float
    method: str
    #: Every image whose nearest neighbour scores below this is among the outliers
    #: examined exactly (1.0: every score is exact).
    outliers_certain_below: float = 1.0
    notes: list[str] = field(default_factory=list)
    candidates: int = 0  # candidate pairs looked at
    #: candidate pairs decided by comparing local features, in this run or cached from an
    #: earlier one (the same count however often it is asked), and of them in this run
    verified: int = 0
    verified_now: int = 0
    keep_in: tuple[str, ...] = ()  # kept folders, relative to the root
    prefer: frozenset[str] = frozenset()  # keepers the user chose
    #: data-set triage (engine.triage.dataset, engine.triage.labels, engine.triage.leaks)
    mislabeled: list[Mislabel] = field(default_factory=list)
    #: classes confused as a rule, each with the pictures between them (not listed)
    confusions: list[Confusion] = field(default_factory=list)
    labels_under_cut: int = 0  # candidates for a wrong label scored under the cut
    unusable: list[Unusable] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    #: the lowest visual similarity among the copies found: the threshold the copy rule
    #: works at (a threshold at or under it groups every copy found)
    floor: float = 0.0

    @property
    def duplicates(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def movable(self) -> list[str]:
        """Every member that a move sets aside: not a representative, not kept."""
        return [m.path for g in self.groups for m in g.members if not m.kept]

    def kept_members(self) -> list[str]:
        return [m.path for g in self.groups for m in g.members if m.kept]

    def keep(self) -> Keep:
        """What a move must leave in place: every keeper, the kept copies, the kept
        folders (compared by real location when files move)."""
        stay = [g.representative.path for g in self.groups] + self.kept_members()
        return Keep(tuple(stay), self.keep_in)
