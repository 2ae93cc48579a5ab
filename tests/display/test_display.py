"""The display layer alone, no kernel: pacing under the rate limits, head and tail, frame
collapsing, labelled lines, the split view's rendering, tables."""

from __future__ import annotations

import asyncio
import io
import random
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta, timezone

import pytest
from samples import chunked, sample

from asyncmagic.display.output import Governor, HeadTail, LiveOutput, collapse_frames
from asyncmagic.display.splitview import SplitContent, last_frames
from asyncmagic.display.table import Table, summary_table
from asyncmagic.engine.result import Result


@pytest.mark.parametrize("seed", range(8))
def test_head_tail_shows_the_first_and_last_lines_and_counts_the_rest(seed: int):
    rng = random.Random(seed)
    text = sample(rng, 5_000)
    limit = HeadTail(max_lines=100, max_chars=1_000_000)
    shown = "".join(limit.admit("stdout", piece) for piece in chunked(text, rng))
    tail = "".join(t for _, t in limit.finish())
    lines = text.splitlines(keepends=True)
    assert shown == "".join(lines[:50]) and tail == "".join(lines[-50:])
    assert limit.hidden_lines == 4_900 and limit.hidden_chars == len(text) - len(shown) - len(tail)


def test_the_governor_lets_a_budget_through_then_says_how_long_to_wait():
    governor = Governor(bytes_per_s=1000, messages_per_s=10, window=60.0)
    assert governor.delay(1000, 1) == 0  # nothing sent yet
    governor.record(60_000, 1)  # the window's whole byte budget
    wait = governor.delay(1, 1)
    assert 0 < wait <= 60.0  # until the first record leaves the window
    many = Governor(bytes_per_s=10**9, messages_per_s=1, window=60.0)
    for _ in range(60):
        many.record(1, 1)
    assert many.delay(1, 1) > 0  # the message budget binds alike
    assert Governor().delay(10**6, 1) == 0  # one big message alone always passes


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain\n", "plain\n"),
        ("a\rb\rc", "\rc"),
        ("10%\r20%\r30%\ndone\n", "\r30%\ndone\n"),
        ("frame\r", "frame\r"),
        ("line\r\nnext", "line\r\nnext"),
    ],
)
def test_collapse_frames_keeps_the_last_frame_of_each_line(text, shown):
    assert collapse_frames(text) == shown


def test_the_split_view_renders_each_column_as_a_terminal_leaves_it():
    content = SplitContent("compiled 1\n10%\r100%\n", "warn <b>&</b>\n")
    assert repr(content) == "── stdout ──\ncompiled 1\n100%\n── stderr ──\nwarn <b>&</b>"
    html = content._repr_html_()
    assert "warn &lt;b&gt;&amp;&lt;/b&gt;" in html and "<b>" not in html  # escaped
    assert 'class="asyncmagic-stdout"' in html and 'class="asyncmagic-stderr"' in html
    assert last_frames("a\rb\r\nc") == "b\nc"


def test_a_table_aligns_its_text_and_marks_failed_rows_in_html():
    table = Table(("id", "command"), [("1", "sleep 1"), ("22", "<x>")], failed=[False, True], left=1)
    assert repr(table) == "id  command\n1   sleep 1\n22  <x>"
    html = table._repr_html_()
    assert html.count('class="asyncmagic-failed"') == 1 and "&lt;x&gt;" in html
    assert repr(Table(("a",), [], empty="no jobs")) == "no jobs"


def test_the_summary_table_names_each_command_and_counts_the_failed():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def result(command: str, code: int) -> Result:
        return Result(
            command=command,
            returncode=code,
            stdout="x" * 10,
            stderr="",
            started_at=start,
            finished_at=start + timedelta(seconds=2),
            ended="exit",
        )

    table = summary_table([result("make a", 0), result("make b && 'q\"'", 2)])
    assert table.title == "2 commands, 1 failed"
    text = repr(table).splitlines()
    assert text[2].split() == ["make", "a", "ok", "0", "2.0", "s", "10"]
    assert "exit 2" in text[3]
    assert 'title="make b &amp;&amp; &#x27;q&quot;&#x27;"' in table._repr_html_()  # the whole command


def test_labelled_live_output_shows_whole_lines_each_with_its_stream_label():
    out, err = io.StringIO(), io.StringIO()

    async def show() -> None:
        live = LiveOutput(label=True, min_gap=0)
        live("stdout", "one\ntw")
        live("stderr", "warn\n")
        live("stdout", "o\nthree")
        await live.aclose()

    with redirect_stdout(out), redirect_stderr(err):
        asyncio.run(show())
    assert out.getvalue() == "[out] one\n[out] two\n[out] three\n"
    assert err.getvalue() == "[err] warn\n"


def test_many_status_lines_are_refreshed_evenly_and_each_in_turn():
    """30 jobs' status lines: one update at a time, at most per_second of them a second
    (a hundred jobs started together would otherwise burst each second), every line in turn."""
    from asyncmagic.display.status import StatusLines

    lines = StatusLines(every=0.3, per_second=40)
    texts: dict[int, list[str]] = {i: [] for i in range(30)}
    done = asyncio.Event()

    class Line:  # where a DisplayHandle's update would publish
        def __init__(self, key: int) -> None:
            self.key = key

        def update(self, obj: object) -> None:
            texts[self.key].append(repr(obj))
            if all(texts.values()):
                lines.close()
                done.set()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(30):
            lines.add(i, Line(i), lambda i=i: f"[job {i}]")  # type: ignore[arg-type]
        await asyncio.wait_for(done.wait(), 30)
        return loop.time() - start

    elapsed = asyncio.run(main())
    assert 30 <= elapsed * 40 + 1  # never more than the budget, however loaded
    assert all(t == [f"[job {k}]"] for k, t in texts.items()), "each once, in turn"


@pytest.fixture
def iopub():
    """ipykernel's own IO thread and output streams on a real zmq socket, and a reader of it."""
    zmq = pytest.importorskip("zmq")
    from ipykernel.iostream import IOPubThread, OutStream
    from jupyter_client.session import Session

    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    pub.bind("inproc://iopub")
    sub.connect("inproc://iopub")
    sub.subscribe(b"")
    thread = IOPubThread(pub)
    thread.start()
    session = Session(key=b"")
    streams = {name: OutStream(session, thread, name, watchfd=False) for name in ("stdout", "stderr")}

    def received(chars: int) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        while sum(len(text) for _, text in got) < chars:
            assert sub.poll(10_000), f"only {got} arrived"
            _, frames = session.feed_identities(sub.recv_multipart())
            content = session.deserialize(frames)["content"]
            got.append((content["name"], content["text"]))
        return got

    yield thread, streams, received
    thread.stop()
    thread.close()
    sub.close()
    context.term()


def test_a_stream_is_sent_without_waiting_and_the_two_streams_keep_their_order(iopub):
    thread, streams, received = iopub
    held, release = threading.Event(), threading.Event()
    thread.schedule(lambda: (held.set(), release.wait(20)))  # the IO thread busy, as at a cell's start
    assert held.wait(10)
    with redirect_stdout(streams["stdout"]), redirect_stderr(streams["stderr"]):
        live = LiveOutput(min_gap=0, governor=Governor())
    live("stdout", "a\n")
    live("stderr", "b\n")  # both handed to the busy IO thread: neither call waited for it
    writer = threading.Thread(target=live, args=("stdout", "c\n"))
    writer.start()
    # "c" must not join the stdout text still unsent: the writer waits for that send first.
    deadline = time.monotonic() + 10
    while not _waiting(writer) and not _holds(streams["stdout"], "c"):
        assert time.monotonic() < deadline and writer.is_alive(), "the writer neither waited nor wrote"
        time.sleep(0.001)
    release.set()
    writer.join(10)
    assert received(6) == [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n")]


def _holds(stream, text: str) -> bool:
    """Whether ipykernel's stream holds ``text`` not yet sent."""
    with stream._buffer_lock:
        return any(text in buffer.getvalue() for buffer in stream._buffers.values())


def _waiting(thread: threading.Thread) -> bool:
    """Whether the thread is blocked in a ``threading.Event.wait``."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False
