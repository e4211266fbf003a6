"""The boxed table style every command prints."""

from nself_ops.tables import box, columns


def test_box_lines_share_one_width():
    text = box("Title", ["short", "a much longer line of text " * 3])
    widths = {len(line) for line in text.splitlines()}
    assert len(widths) == 1
    lines = text.splitlines()
    assert lines[0].startswith("┌") and lines[0].endswith("┐")
    assert lines[1] == "│ Title" + " " * (len(lines[1]) - 8) + "│"
    assert lines[2].startswith("├")
    assert lines[-1].startswith("└")


def test_box_has_a_minimum_width():
    assert len(box("T", []).splitlines()[0]) == 61


def test_columns_align():
    lines = columns(["Name", "N"], [["api", "3"], ["postgres", "1"]])
    assert lines[0].index("N", 4) == lines[1].index("3") == lines[2].index("1")
