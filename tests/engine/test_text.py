"""Text arriving in pieces: decoded whole, split into lines, labelled without breaking lines."""

from __future__ import annotations

import pytest

from asyncmagic.engine.text import Labeller, Lines, newlines, shorten, utf8_decoder


def test_a_character_split_across_reads_is_decoded_whole():
    data = "é€😀".encode()
    decoder = utf8_decoder()
    assert "".join(decoder.decode(data[i : i + 1]) for i in range(len(data))) == "é€😀"
    assert utf8_decoder().decode(b"\xff ok", final=True) == "\ufffd ok"


def test_lines_waits_for_the_end_of_a_line_and_keeps_at_most_its_tail():
    lines = Lines()
    assert lines.feed("a\nb") == ["a"] and lines.feed("c\n\nd") == ["bc", ""]
    assert lines.rest() == "d" and lines.rest() == ""
    short = Lines(keep=3)
    assert short.feed("abcdef") == [] and short.partial == "def"


def test_the_labeller_passes_whole_lines_of_several_sources_into_one_stream():
    got: list[tuple[str, str]] = []
    first = Labeller(lambda s, t: got.append((s, t)), {"stdout": "[1] ", "stderr": "[1] "}, into="stderr")
    second = Labeller(lambda s, t: got.append((s, t)), {"stdout": "[2] ", "stderr": "[2] "}, into="stderr")
    first("stdout", "half")
    second("stderr", "whole\n")
    first("stdout", " done\nnext")
    first.close()
    second.close()
    assert got == [("stderr", "[2] whole\n"), ("stderr", "[1] half done\n"), ("stderr", "[1] next\n")]


def test_shorten_keeps_one_line_and_says_what_was_left_out():
    assert shorten("  make   all  ", 20) == "make all"
    assert shorten("echo one\necho two", 20) == "echo one…"
    assert shorten("x" * 30, 10) == "x" * 9 + "…"
    assert shorten("", 5) == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "\n",
        "a\nb\n",
        "no newline",
        "é\nü\n" * 100,
        ("x" * 99 + "\n") * 3000,
        "\n" * 65536 + "\n",
        "y" * 70000,
    ],
    ids=["empty", "one", "newline", "two", "none", "non-ascii", "past-a-slice", "slice-edge", "long-line"],
)
def test_newlines_counts_as_str_count_does(text):
    assert newlines(text) == text.count("\n")


def test_newlines_counts_each_piece_as_its_own_even_when_it_is_counted_twice():
    many, few = "a\n" * 50_000, "ab" * 49_999 + "\n\n"
    assert len(many) == len(few)
    assert [newlines(many), newlines(many), newlines(few), newlines(many)] == [50_000, 50_000, 2, 50_000]
    assert newlines("é\n" * 40_000) == 40_000 and newlines("") == 0
