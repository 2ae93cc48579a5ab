"""Huge output and parallel fan-out, through a real kernel, in one run.

Measures, as the frontend sees it:
- 1 GB of output (100-character lines) through ``%%arun`` with the default display and with
  ``--quiet``: the cell's wall time as a ratio to the same command writing to /dev/null
  from the kernel (and to ``subprocess.run(capture_output=True)``, which holds it all),
  the growth of the kernel's peak RSS during the cell, and the iopub messages and bytes
  the cell sent to the client; beside them the floor, ``dd`` writing the same flood from a
  pipe to a file (the CPU a C program pays to keep every byte on disk, as the log does);
- the seed's five commands (its ``execute_many`` example) with ``%%arun --parallel``
  against the same five lines run one by one by ``%%arun`` and by ``!cmd``.

Run: ``make bench`` (or ``python benchmarks/bench_output.py [--rounds N]``). The machines are
shared and noisy: read the medians and ratios, not one absolute time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

from kernelbench import Kernel, median, table, timed

GB = 1_000_000_000
FLOOD = f"yes {'x' * 99} | head -c {GB}"

SEED_COMMANDS = [
    'echo "Hello, World!"',
    "python3 --version",
    'date "+%Y-%m-%d %H:%M:%S"',
    "ls -la /tmp | head -5",
    'sleep 1 && echo "After the pause"',
]

FLOOR = "dd of=FILE bs=1M (CPU: dd's)"
"""The floor: a C reader writing every byte to a file, as the kernel's log keeps it."""
PEAK_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024"
CLEAN_LOGS = "import shutil, asyncmagic.engine.capture\nshutil.rmtree(asyncmagic.engine.capture.log_dir())"
"""Each 1 GB run leaves a 1 GB log file until the kernel exits; removed between runs so that
every run writes to a disk in the same state."""
RESET_PEAK = "open('/proc/self/clear_refs', 'w').write('5')"


CPU = "(lambda t: t.user + t.system)(__import__('os').times())"
"""The kernel process's own CPU seconds (its threads too, not its children)."""


def peak_growth(kernel: Kernel, cell: str) -> tuple[float, int, int, int, float]:
    """(seconds, peak RSS growth in bytes, iopub messages, iopub bytes, kernel CPU seconds)
    of one cell."""
    kernel.run(f"{RESET_PEAK}\n_rss0 = {PEAK_RSS}\n_cpu0 = {CPU}")
    t = timed(kernel, cell)
    grown, cpu = kernel.eval(f"({PEAK_RSS} - _rss0, {CPU} - _cpu0)")
    sent = [m for _, m in t.execution.messages if m["msg_type"] not in ("status", "execute_input")]
    size = sum(len(json.dumps(m["content"])) for m in sent)
    return t.seconds, grown, len(sent), size, cpu


def floor() -> tuple[float, float]:
    """(seconds, CPU seconds of the reader) of ``dd`` reading the flood from a pipe into a
    new file, 1 MiB at a time: what keeping every byte on disk costs a C program on this
    machine, the floor under the kernel's CPU for a logged flood."""
    fd, path = tempfile.mkstemp(prefix="bench-floor-")
    os.close(fd)
    start = time.perf_counter()
    producer = subprocess.Popen(FLOOD, shell=True, stdout=subprocess.PIPE)
    reader = subprocess.Popen(["dd", f"of={path}", "bs=1M"], stdin=producer.stdout, stderr=subprocess.DEVNULL)
    assert producer.stdout is not None
    producer.stdout.close()
    _, _, usage = os.wait4(reader.pid, 0)
    producer.wait()
    seconds = time.perf_counter() - start
    os.unlink(path)
    return seconds, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement (median)")
    opts = parser.parse_args()

    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    cells = {
        "/dev/null": (
            f"import subprocess\n_ = subprocess.run({FLOOD!r}, shell=True, stdout=subprocess.DEVNULL)"
        ),
        "subprocess.run, captured": (
            f"import subprocess\n_ = subprocess.run({FLOOD!r}, shell=True, capture_output=True)\ndel _"
        ),
        "%%arun": f"%%arun\n{FLOOD}",
        "%%arun --quiet": f"%%arun --quiet\n{FLOOD}",
    }
    seed = "\n".join(SEED_COMMANDS)
    fan = {
        "%%arun --parallel": f"%%arun --parallel\n{seed}",
        "%%arun, one by one": f"%%arun\n{seed}",
        "!cmd, one by one": "\n".join(f"!{c}" for c in SEED_COMMANDS),
    }
    try:
        flood: dict[str, list[tuple[float, int, int, int, float]]] = {k: [] for k in cells}
        flood[FLOOR] = []
        fanned: dict[str, list[float]] = {k: [] for k in fan}
        for _ in range(opts.rounds):
            seconds, cpu = floor()
            flood[FLOOR].append((seconds, 0, 0, 0, cpu))
            for name, cell in cells.items():
                flood[name].append(peak_growth(kernel, cell))
                kernel.run(CLEAN_LOGS)
            for name, cell in fan.items():
                fanned[name].append(timed(kernel, cell).seconds)
    finally:
        kernel.shutdown()

    base = median([r[0] for r in flood["/dev/null"]])
    held = median([r[0] for r in flood["subprocess.run, captured"]])
    columns = ["1 GB of output", "time vs /dev/null", "time vs subprocess.run, captured"]
    rows = [[*columns, "kernel CPU", "kernel peak RSS growth", "iopub messages", "iopub bytes"]]
    for name, runs in flood.items():
        rows.append(
            [
                name,
                f"{median([r[0] for r in runs]) / base:.1f}x",
                f"{median([r[0] for r in runs]) / held:.2f}x",
                f"{median([r[4] for r in runs]):.2f} s",
                *(
                    ["-", "-", "-"]  # not a kernel: nothing of its own to measure there
                    if name == FLOOR
                    else [
                        f"{median([r[1] for r in runs]) / 2**20:.0f} MB",
                        f"{median([r[2] for r in runs]):,.0f}",
                        f"{median([r[3] for r in runs]):,.0f}",
                    ]
                ),
            ]
        )
    one_by_one = median(fanned["%%arun, one by one"])
    fan_rows = [["the seed's five commands", "time vs one by one (%%arun)"]]
    fan_rows += [[name, f"{median(t) / one_by_one:.2f}x"] for name, t in fanned.items()]
    print(f"\nrounds: {opts.rounds}; {time.strftime('%Y-%m-%d')}")
    print(table(rows))
    print()
    print(table(fan_rows))


if __name__ == "__main__":
    main()
