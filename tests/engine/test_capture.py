"""Head-and-tail bookkeeping, checked against the plain text it stands for, over many chunkings."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import threading
import time

import pytest
from samples import chunked, sample

from asyncmagic.engine.capture import Capture, Spill, notice
from asyncmagic.engine.pagecache import drop_behind


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


def test_a_big_log_lets_go_of_its_older_pages_and_keeps_every_byte(tmp_path, monkeypatch):
    """Past DROP_AFTER, every DROP_EVERY bytes the log's pages before the last DROP_EVERY
    are given up (the real advice runs); the log still reads back whole."""
    import asyncmagic.engine.capture as capture

    ends: list[int] = []
    real = capture.drop_behind
    monkeypatch.setattr(capture, "DROP_AFTER", 4 << 20)
    monkeypatch.setattr(capture, "DROP_EVERY", 1 << 20)
    monkeypatch.setattr(capture, "drop_behind", lambda fd, end: (ends.append(end), real(fd, end)))
    spill = Spill()
    pieces = [bytes([65 + i % 26]) * 300_000 for i in range(40)]  # 12 MB
    for piece in pieces:
        spill.write(piece)
    spill.close()
    assert ends and ends[0] >= 3 << 20 and all(b - a >= 1 << 20 for a, b in itertools.pairwise(ends))
    assert ends[-1] >= spill.size - 3 * (1 << 20) and ends[-1] <= spill.size - (1 << 20)
    with open(spill.path, "rb") as log:
        assert log.read() == b"".join(pieces)


@pytest.mark.skipif(not shutil.which("fincore"), reason="needs util-linux's fincore")
def test_drop_behind_empties_the_page_cache_of_written_pages(tmp_path):
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True)
    if kind.stdout.strip() == "tmpfs":
        pytest.skip("a tmpfs file's pages are its storage: the advice keeps them")
    path = tmp_path / "log"
    with open(path, "wb") as log:
        log.write(os.urandom(8 << 20))
        log.flush()
        os.fsync(log.fileno())  # clean pages: the advice drops them at once
        drop_behind(log.fileno(), 6 << 20)
    # the descriptor is closed: the worker holds its own duplicate
    resident = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        resident.append(int(out.stdout))
        if resident[-1] <= (2 << 20) + 4096:
            break
        time.sleep(0.05)
    assert resident[-1] <= (2 << 20) + 4096, resident


def test_the_page_cache_thread_ends_when_its_work_is_done(tmp_path):
    import asyncmagic.engine.pagecache as pagecache

    with open(tmp_path / "log", "wb") as log:
        log.write(b"x" * 65536)
        for _ in range(3):
            drop_behind(log.fileno(), 65536)
        worker = pagecache._worker
    if worker is not None:
        worker.join(30)
        assert not worker.is_alive()
    assert pagecache._worker is None and pagecache._work.empty()
    assert "asyncmagic-pagecache" not in [t.name for t in threading.enumerate()]
