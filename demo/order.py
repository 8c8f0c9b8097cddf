"""The order the app numbers a photo's faces in: left to right, top to bottom for a column.

The engine lists faces most prominent first; a person reading a group photo counts them left
to right. The app (Compare's and Identify's pictures, tables, face numbers and API payloads)
numbers them in reading order, so the number on a box, in a table and in a request agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any


def reading_order(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Indices of `boxes` (x1, y1, x2, y2) left to right; faces stacked in one column (centres
    closer than half a median face width) top to bottom."""
    if not boxes:
        return []
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
    tie = 0.5 * median(max(1.0, b[2] - b[0]) for b in boxes)
    by_x = sorted(range(len(boxes)), key=lambda i: (centres[i][0], centres[i][1]))
    columns: list[list[int]] = []
    for i in by_x:
        if columns and centres[i][0] - centres[columns[-1][0]][0] < tie:
            columns[-1].append(i)
        else:
            columns.append([i])
    return [i for column in columns for i in sorted(column, key=lambda j: centres[j][1])]


def in_reading_order(faces: Sequence[Any]) -> list[Any]:
    """Faces (anything with a .box) in reading order."""
    return [faces[i] for i in reading_order([[float(v) for v in f.box[:4]] for f in faces])]
