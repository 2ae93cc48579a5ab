"""Head-and-tail bookkeeping, checked against the plain text it stands for, over many chunkings."""

from __future__ import annotations

import random

import pytest

from asyncmagic.engine.capture import Capture, notice


def chunked(text: str, rng: random.Random) -> list[str]:
    pieces, pos = [], 0
    while pos < len(text):
        size = rng.choice([1, 7, 100, 3000, 70_000])
        pieces.append(text[pos : pos + size])
        pos += size
    return pieces


def sample(rng: random.Random, lines: int) -> str:
    return "".join(f"{i}:" + "x" * rng.randrange(0, 300) + "\n" for i in range(lines))


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
