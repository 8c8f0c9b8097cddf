"""demo.order: the app numbers a photo's faces left to right, top to bottom within a column."""
from __future__ import annotations

from demo.order import reading_order


def test_faces_in_a_row_are_numbered_left_to_right_whatever_their_size():
    # sizes as the detector would rank them: the big face on the right comes first
    boxes = [(400, 10, 500, 110), (10, 20, 60, 70), (200, 5, 270, 75)]
    assert reading_order(boxes) == [1, 2, 0]


def test_faces_stacked_in_a_column_are_numbered_top_to_bottom():
    boxes = [(100, 200, 160, 260), (300, 0, 360, 60), (105, 10, 165, 70)]   # two stacked on the left
    assert reading_order(boxes) == [2, 0, 1]


def test_no_faces():
    assert reading_order([]) == []
