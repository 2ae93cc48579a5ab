"""Head-and-tail bookkeeping, checked against the plain text it stands for, over many chunkings."""

from __future__ import annotations

import random

import pytest
from samples import chunked, sample

from asyncmagic.engine.capture import Capture, notice


@pytest.mark.parametrize("seed", range(8))
def test_capture_keeps_head_and_tail_and_counts_the_middle(seed: int):
    rng = random.Random(seed)
    text = sample(rng, 20_000)
    capture = Capture(limit=200_000, keep=50_000)
    for piece in chunked(text, rng):
        capture.append(piece)
    got = capture.text("/log")
    head = text[:50_000]
    tail_start = len(text) - 50_000
    if text[tail_start - 1] != "\n":  # the tail starts on a whole line
        tail_start = text.index("\n", tail_start) + 1
    middle = text[50_000:tail_start]
    assert got == head + "\n" + notice(middle.count("\n"), len(middle), "/log") + "\n" + text[tail_start:]


def test_capture_under_the_limit_is_whole():
    capture = Capture(limit=1000)
    for piece in ["a" * 600, "b\n" * 200]:
        capture.append(piece)
    assert capture.text() == "a" * 600 + "b\n" * 200 and not capture.truncated
