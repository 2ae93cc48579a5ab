"""A short tour in Notebook 7, the second most used client: streaming, stderr, --split, a
background job's late output in its own cell, a progress bar, an interrupt."""

from __future__ import annotations

import re

from labpage import STDERR, STDOUT, ClassicNotebook, running, text
from playwright.sync_api import expect

LOAD = "%load_ext asyncmagic"


def test_a_short_tour_in_notebook_7(lab, page):
    cells = [
        LOAD,
        '%%arun\nfor i in 1 2 3; do echo "line $i"; sleep 0.5; done\necho oops >&2',
        '%%arun --split\necho "to out"\necho "to err" >&2',
        '%%arun --bg\necho "epoch 1"\nwhile [ ! -e gate7 ]; do sleep 0.05; done\necho "epoch 2"',
        "open('gate7', 'w').close()\nprint('another cell ran')",
        "%%arun\nfor i in $(seq 1 100); do printf '\\rprogress %3d%%' $i; sleep 0.01; done; echo",
        "%%arun\necho started\nsleep 600",
    ]
    nb = ClassicNotebook(page, lab.notebook7("tour7.ipynb", *cells))
    expect(page).to_have_url(re.compile(r"/notebooks/tour7\.ipynb"))
    nb.run_and_wait(0, timeout=90_000)

    streaming = nb.run(1)
    expect(streaming.locator(STDOUT)).to_contain_text("line 1")
    running(streaming)  # the first line is on the page while the command runs
    nb.wait_done(1)
    assert text(streaming.locator(STDOUT)).split() == ["line", "1", "line", "2", "line", "3"]
    expect(streaming.locator(STDERR)).to_have_text("oops")

    split = nb.run_and_wait(2)
    expect(split.locator(".asyncmagic-stdout")).to_contain_text("to out")
    expect(split.locator(".asyncmagic-stderr")).to_contain_text("to err")

    job = nb.run_and_wait(3)
    expect(job.locator(STDOUT)).to_have_text("epoch 1")
    later = nb.run_and_wait(4)
    expect(later.locator(STDOUT)).to_have_text("another cell ran")
    expect(job.locator(STDOUT)).to_have_text("epoch 1\nepoch 2")  # late output, in its own cell
    assert "epoch" not in text(later.locator(".jp-OutputArea"))

    bar = nb.run_and_wait(5)
    expect(bar.locator(STDOUT)).to_have_text("progress 100%")

    stopped = nb.run(6)
    expect(stopped.locator(STDOUT)).to_have_text("started")
    page.keyboard.press("Escape")
    page.keyboard.press("i")
    page.keyboard.press("i")  # Notebook 7's own shortcut: interrupt the kernel
    nb.wait_done(6)
    expect(stopped.locator(STDERR)).to_have_text(re.compile(r"^CommandError: .*: interrupted · [\d.]+ m?s$"))
