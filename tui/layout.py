"""Size tiers: how big thumbnails are for the terminal at hand.

An 80x24 terminal must still show the tree, a query and two results side by side;
a 200x60 one deserves bigger pictures. Sizes are in cells; each cell holds two
pixels stacked, so a thumbnail of W x H cells shows W x 2H pixels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
    card_width: int  # a result card, border included
    thumb: tuple[int, int]  # a result thumbnail (cells wide, cells high)
    query: tuple[int, int]  # the query preview
    left: int  # the column of the tree and the query, border included


COMPACT = Tier("compact", 22, (16, 5), (24, 5), 32)
NORMAL = Tier("normal", 24, (20, 8), (28, 9), 34)
LARGE = Tier("large", 32, (28, 12), (36, 14), 40)


def tier_for(width: int, height: int) -> Tier:
    if height < 32 or width < 100:
        return COMPACT
    if height >= 50 and width >= 160:
        return LARGE
    return NORMAL
