"""Text for head-and-tail tests: lines of random lengths, cut into reads of random sizes."""

from __future__ import annotations

import random


def chunked(text: str, rng: random.Random) -> list[str]:
    pieces, pos = [], 0
    while pos < len(text):
        size = rng.choice([1, 7, 100, 3000, 70_000])
        pieces.append(text[pos : pos + size])
        pos += size
    return pieces


def sample(rng: random.Random, lines: int) -> str:
    return "".join(f"{i}:" + "x" * rng.randrange(0, 300) + "\n" for i in range(lines))
