"""Area of interest: the pure geometry every part of the world agrees on (no I/O).

A zone is cut into square cells one radius wide. Everything within one radius of a point lies
in that point's cell or one of the eight around it, so a query reads nine cells, whatever the
zone's population. Distances are compared squared, exactly as the Redis scripts compare them,
so every implementation agrees on a point that lies on the circle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator


def cell_of(x: float, y: float, cell_size: float) -> tuple[int, int]:
    return math.floor(x / cell_size), math.floor(y / cell_size)


def within(ax: float, ay: float, bx: float, by: float, radius: float) -> bool:
    """Is (ax, ay) within `radius` of (bx, by)? The circle itself counts as inside."""
    dx, dy = ax - bx, ay - by
    return dx * dx + dy * dy <= radius * radius


def cells_around(cx: int, cy: int, span: int = 1) -> Iterator[tuple[int, int]]:
    """The cells within `span` cells of (cx, cy), that cell included."""
    for i in range(cx - span, cx + span + 1):
        for j in range(cy - span, cy + span + 1):
            yield i, j


def cell_span(radius: float, cell_size: float) -> int:
    """How many cells out a query of `radius` must look, in cells of `cell_size`."""
    return max(1, math.ceil(radius / cell_size))
