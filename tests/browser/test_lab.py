"""What a person sees in JupyterLab: streaming, stderr, jobs, interrupt, --split, progress bars.

Each test writes a notebook, opens it in a real JupyterLab in headless Chromium, runs its
cells with Shift+Enter and reads the rendered page. Screenshots: build/browser/<test>.png.
"""

from __future__ import annotations

import re

from labpage import STDERR, STDOUT, Notebook, running, text
from playwright.sync_api import expect

LOAD = "%load_ext asyncmagic"


def test_output_streams_while_the_command_runs(lab, page):
    nb = Notebook(
        page,
        lab.notebook(
            "streaming.ipynb", LOAD, '%%arun\nfor i in 1 2 3 4 5 6; do echo "line $i"; sleep 1; done'
        ),
    )
    nb.run_and_wait(0)
    cell = nb.run(1)
    out = cell.locator(STDOUT)
    expect(out).to_contain_text("line 2")
    running(cell)  # early lines are on the page while the command still runs
    assert "line 6" not in text(out)
    expect(out).to_contain_text("line 6")
    nb.wait_done(1)
    assert text(out).split() == [w for i in range(1, 7) for w in ("line", str(i))]


def test_stderr_renders_as_stderr(lab, page):
    nb = Notebook(
        page, lab.notebook("stderr.ipynb", LOAD, "%%arun\necho to-out\necho to-err >&2\necho out-again")
    )
    nb.run_and_wait(0)
    cell = nb.run_and_wait(1)
    expect(cell.locator(STDERR)).to_have_text("to-err")
    assert "to-err" not in text(cell.locator(STDOUT))
    assert "to-out" in text(cell.locator(STDOUT)) and "out-again" in text(cell.locator(STDOUT))


def test_a_background_job_streams_into_its_own_cell(lab, page):
    # The job waits for a file that only the later cell creates, so its last line is
    # printed after that cell ran, and must still land in the job's own cell.
    job = '%%arun --bg\necho "epoch 1"\nwhile [ ! -e gate ]; do sleep 0.05; done\necho "epoch 2"'
    other = "open('gate', 'w').close()\nprint('another cell ran')"
    nb = Notebook(page, lab.notebook("jobs.ipynb", LOAD, job, other))
    nb.run_and_wait(0)
    job_cell = nb.run_and_wait(1)  # returns at once
    expect(job_cell.locator(STDOUT)).to_have_text("epoch 1")
    later = nb.run_and_wait(2)
    expect(later.locator(STDOUT)).to_have_text("another cell ran")
    expect(job_cell.locator(STDOUT)).to_have_text("epoch 1\nepoch 2")
    status = job_cell.locator(".jp-OutputArea-output").first  # above the output, not inside it
    expect(status).to_contain_text("[job 1] exit 0")
    assert "epoch" not in text(later.locator(".jp-OutputArea"))


def test_kernel_interrupt_stops_a_running_command(lab, page):
    nb = Notebook(page, lab.notebook("interrupt.ipynb", LOAD, "%%arun\necho started\nsleep 600"))
    nb.run_and_wait(0)
    cell = nb.run(1)
    expect(cell.locator(STDOUT)).to_have_text("started")
    nb.menu("Kernel", "Interrupt Kernel")
    nb.wait_done(1)
    expect(cell.locator(STDERR)).to_have_text(re.compile(r"^CommandError: .*: interrupted · [\d.]+ m?s$"))
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle")


def test_split_view_shows_two_columns(lab, page):
    cell = '%%arun --split\nfor i in 1 2 3; do echo "out $i"; echo "err $i" >&2; done'
    nb = Notebook(page, lab.notebook("split.ipynb", LOAD, cell))
    nb.run_and_wait(0)
    shown = nb.run_and_wait(1)
    out, err = shown.locator(".asyncmagic-stdout"), shown.locator(".asyncmagic-stderr")
    expect(out).to_contain_text("out 3")
    expect(err).to_contain_text("err 3")
    assert "err" not in text(out) and "out" not in text(err)
    # Issue 16.8: it looked foreign: the hovered table turned blue, stderr was not stderr's
    # colour, fixed halves wrapped words. Now: stderr's own background, no hover change,
    # side by side, words kept whole.
    stderr_background = page.evaluate(
        "getComputedStyle(document.body).getPropertyValue('--jp-rendermime-error-background').trim()"
    )
    assert stderr_background and background(err) == background_of_colour(page, stderr_background)
    before = background(out)
    out.hover()
    assert background(out) == before
    assert out.bounding_box()["x"] < err.bounding_box()["x"]
    assert out.locator("pre").evaluate("e => getComputedStyle(e).overflowWrap") == "break-word"


def background(locator) -> str:
    return locator.evaluate("e => getComputedStyle(e).backgroundColor")


def background_of_colour(page, colour: str) -> str:
    """The computed form of a CSS colour, as getComputedStyle reports backgrounds."""
    return page.evaluate(
        "c => { const d = document.createElement('div'); d.style.background = c;"
        " document.body.appendChild(d); const v = getComputedStyle(d).backgroundColor;"
        " d.remove(); return v; }",
        colour,
    )


def test_a_progress_bar_is_one_updating_line(lab, page):
    bar = "%%arun\nfor i in $(seq 1 200); do printf '\\rprogress %3d%%' $i; sleep 0.01; done; echo"
    nb = Notebook(page, lab.notebook("progress.ipynb", LOAD, bar))
    nb.run_and_wait(0)
    cell = nb.run_and_wait(1)
    out = cell.locator(STDOUT)
    expect(out).to_have_text("progress 200%")
    assert text(out).count("progress") == 1


def test_a_cut_output_says_so_at_the_top(lab, page):
    """Issue 16.5: the notice sat 500 lines down; a person reading from the top missed it."""
    nb = Notebook(page, lab.notebook("cut.ipynb", LOAD, "%arun --max-lines 6 seq 1 100000"))
    nb.run_and_wait(0)
    cell = nb.run_and_wait(1)
    first = cell.locator(".jp-OutputArea-output").first
    expect(first).to_contain_text("99,994 lines")
    expect(first).to_contain_text("not shown; full output: /tmp/asyncmagic-")


def test_ask_shows_an_input_box_and_the_answer_continues_the_command(lab, page):
    from conftest import ARTIFACTS

    cell = (
        "%%arun --ask\n"
        'read -p "Project name: " name\n'
        'echo "creating $name"\n'
        'python3 -c \'import getpass; print(len(getpass.getpass("Token: ")), "chars")\''
    )
    nb = Notebook(page, lab.notebook("ask.ipynb", LOAD, cell))
    nb.run_and_wait(0)
    asked = nb.run(1)
    box = asked.locator(".jp-Stdin-input")
    expect(box).to_be_visible()
    expect(asked.locator(STDOUT).first).to_have_text("Project name:")  # right above the box
    page.screenshot(path=str(ARTIFACTS / "ask-box.png"))
    box.fill("myproj")
    box.press("Enter")
    expect(asked.locator(STDOUT).last).to_contain_text("creating myproj")
    secret = asked.locator(".jp-Stdin-input[type=password]")
    expect(secret).to_be_visible()
    secret.fill("s3cret")
    secret.press("Enter")
    nb.wait_done(1)
    expect(asked.locator(STDOUT).last).to_contain_text("6 chars")
    assert "s3cret" not in text(asked.locator(".jp-OutputArea"))


def test_the_stop_button_while_a_box_is_open_ends_the_command(lab, page, marker):
    from kernelclient import processes_with

    stopped = f"%%arun --ask\nread -p 'Never answered: ' x # {marker}"
    again = "%arun --ask read -p 'Again: ' y; echo got $y"
    nb = Notebook(page, lab.notebook("ask-stop.ipynb", LOAD, stopped, again))
    nb.run_and_wait(0)
    asked = nb.run(1)
    stale = asked.locator(".jp-Stdin-input")
    expect(stale).to_be_visible()
    nb.menu("Kernel", "Interrupt Kernel")
    nb.wait_done(1)
    expect(asked.locator(STDERR)).to_contain_text("interrupted")
    assert processes_with(marker) == []
    # JupyterLab leaves an unanswered box on the page when its cell ends (the protocol has
    # no message to take it back). An answer typed there later reaches no one: the next
    # question gets its own box, and its own answer.
    stale.fill("stale")
    stale.press("Enter")
    cell = nb.run(2)
    box = cell.locator(".jp-Stdin-input")
    expect(box).to_be_visible()
    box.fill("fresh")
    box.press("Enter")
    nb.wait_done(2)
    expect(cell.locator(STDOUT).last).to_contain_text("got fresh")


def test_everything_of_a_million_lines_stops_at_the_page_limit(lab, page):
    """Issue 16.5: --max-lines 0 on a million lines froze the page (18 s of script lag)."""
    nb = Notebook(
        page, lab.notebook("huge.ipynb", LOAD, "%arun --max-lines 0 seq 1 1000000", "print('still here')")
    )
    nb.run_and_wait(0)
    cell = nb.run_and_wait(1, timeout=180_000)
    top = cell.locator(".jp-OutputArea-output").first
    expect(top).to_contain_text("(a notebook page shows at most 2.0 MB of one output)")
    shown = page.evaluate("(el) => el.innerText.length", cell.locator(".jp-OutputArea").element_handle())
    assert shown < 2_100_000
    later = nb.run_and_wait(2)  # the page still answers
    expect(later.locator(STDOUT)).to_have_text("still here")
