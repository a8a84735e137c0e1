"""dacl.outputs: a file dacl writes replaces the earlier one whole, or leaves it as it was."""

from __future__ import annotations

import pytest

from dacl import DACLError
from dacl.outputs import write_text


def test_write_text_replaces_the_file_whole(tmp_path):
    target = tmp_path / "results.md"
    target.write_text("earlier")
    write_text(target, "new ± text")
    assert target.read_text() == "new ± text"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_a_write_that_fails_midway_leaves_the_earlier_file(tmp_path):
    target = tmp_path / "results.md"
    target.write_text("earlier")
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate cannot be encoded
        write_text(target, "half written \ud800")
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]  # no partial file left


def test_a_missing_folder_is_one_line_naming_the_option(tmp_path):
    with pytest.raises(DACLError, match=r"--out '.*x.md': no folder"):
        write_text(tmp_path / "nope" / "x.md", "text", "--out")
