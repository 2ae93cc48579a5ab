"""Output fit for a notebook, in a real kernel: progress bars, colour, floods, labels, memory."""

from __future__ import annotations

import json
import os
import sys

import pytest
from kernel import Execution, Kernel

pytestmark = pytest.mark.kernel

PY = sys.executable


def iopub_load(ex: Execution) -> list[tuple[float, int]]:
    """(arrival time, bytes) of every iopub message of a cell, sized as jupyter_server counts."""
    out = []
    for t, msg in ex.messages:
        size = sum(
            len(json.dumps(msg[k], default=str)) for k in ("header", "parent_header", "metadata", "content")
        )
        out.append((t, size + 200))  # + identities, signature, delimiter frames
    return out


def worst_window(load: list[tuple[float, int]], window: float = 3.0) -> tuple[float, float]:
    """The highest (bytes/s, messages/s) over any ``window`` seconds starting at a message."""
    worst_bytes = worst_msgs = 0.0
    for i, (start, _) in enumerate(load):
        inside = [size for t, size in load[i:] if t < start + window]
        worst_bytes = max(worst_bytes, sum(inside) / window)
        worst_msgs = max(worst_msgs, len(inside) / window)
    return worst_bytes, worst_msgs


def rendered(text: str) -> str:
    """What a notebook shows for stream text: each line's last ``\\r`` frame."""
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n"))


def test_progress_bar_sends_few_frames_and_ends_with_the_last(kernel: Kernel):
    script = (
        "import sys, time\n"
        "for i in range(1, 1001):\n"
        "    sys.stdout.write(f'\\r{i}/1000'); sys.stdout.flush(); time.sleep(0.002)\n"
        "print()\n"
    )
    ex = kernel.run(f"%%arun\n{PY} - <<'EOF'\n{script}EOF")
    streams = ex.of_type("stream")
    assert len(streams) <= 25, len(streams)
    assert rendered(ex.stdout) == "1000/1000\n"
    assert ex.stdout.count("\r") < 30


def test_ansi_colour_passes_through(kernel: Kernel):
    ex = kernel.run("%arun printf '\\033[31mred\\033[0m plain\\n'")
    assert ex.stdout == "\x1b[31mred\x1b[0m plain\n"


def test_label_prefixes_every_line(kernel: Kernel):
    ex = kernel.run("%%arun --label\necho one\nsleep 0.05\necho two >&2\nprintf 'three\\nfour'")
    assert ex.streams == [
        ("stdout", "[out] one\n"),
        ("stderr", "[err] two\n"),
        ("stdout", "[out] three\n[out] four"),
    ]


def test_max_lines_shows_head_and_tail_with_a_notice(kernel: Kernel):
    ex = kernel.run("%arun --max-lines 6 -r _r seq 1 100")
    assert ex.stdout == "1\n2\n3\n98\n99\n100\n"
    assert ex.stderr.startswith("… 94 lines (") and "full output: /tmp/asyncmagic-" in ex.stderr
    assert kernel.eval("_r.stdout") == "".join(f"{i}\n" for i in range(1, 101))
    path = ex.stderr.split("full output: ")[1].strip()
    assert open(path).read() == "".join(f"{i}\n" for i in range(1, 101))


def test_config_max_display_lines(kernel: Kernel):
    try:
        kernel.run("%config AsyncMagics.max_display_lines = 4")
        assert kernel.run("%arun seq 1 10").stdout == "1\n2\n9\n10\n"
        assert kernel.run("%arun --max-lines 0 seq 1 10").stdout == "".join(f"{i}\n" for i in range(1, 11))
    finally:
        kernel.run("%config AsyncMagics.max_display_lines = 1000")


def test_a_100_mb_flood_stays_under_the_rate_limits_and_loses_nothing(kernel: Kernel):
    ex = kernel.run("%arun -r _flood head -c 100000000 /dev/zero | tr '\\0' x | fold -w 99")
    worst_bytes, worst_msgs = worst_window(iopub_load(ex))
    assert worst_bytes < 1_000_000 and worst_msgs < 1000, (worst_bytes, worst_msgs)
    newlines = 100_000_000 // 99  # fold ends without one
    assert ex.stdout.startswith("x" * 99 + "\n") and ex.stdout.endswith("\n" + "x" * (100_000_000 % 99))
    notice = ex.stderr.strip()
    assert notice.startswith("… ") and "lines (" in notice and "MB) not shown; full output: " in notice
    assert ex.stdout.count("\n") == 1000  # the default head and tail
    path = notice.split("full output: ")[1]
    assert os.path.getsize(path) == 100_000_000 + newlines
    assert kernel.eval("_flood.log_path") == path


def test_many_commands_together_stay_under_the_rate_limits(kernel: Kernel):
    jobs = "\n".join(f"_f{i} = %arun --bg --max-lines 0 seq 1 200000" for i in range(4))
    ex = kernel.run(jobs + "\nfor _j in (_f0, _f1, _f2, _f3):\n    await _j")
    worst_bytes, worst_msgs = worst_window(iopub_load(ex))
    assert worst_bytes < 1_000_000 and worst_msgs < 1000, (worst_bytes, worst_msgs)


@pytest.mark.parametrize("quiet", ["-q", ""])
def test_a_gigabyte_grows_the_kernel_by_at_most_50_mb(kernel: Kernel, quiet: str):
    rss = "int(open('/proc/self/statm').read().split()[1]) * __import__('os').sysconf('SC_PAGE_SIZE')"
    kernel.run(f"_rss0 = {rss}")
    kernel.run(f"%arun {quiet} -r _gb head -c 1000000000 /dev/zero | tr '\\0' x | fold -w 99", timeout=120)
    grown = kernel.eval(f"({rss} - _rss0) // 2**20")
    assert grown <= 50, f"RSS grew {grown} MB"
    assert kernel.eval("__import__('os').path.getsize(_gb.log_path)") == 1_000_000_000 + 1_000_000_000 // 99
    kernel.run("del _gb")
