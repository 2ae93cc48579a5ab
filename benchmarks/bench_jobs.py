"""Kernel responsiveness while background jobs stream, through a real kernel, in one run.

Reply time of ``1+1`` execute requests (sent one after another, from request to idle):
- with the kernel idle;
- while 4 ``%arun --bg`` jobs each stream about 5 MB/s into their cell;
- while 100 such commands run outside the kernel, writing to /dev/null: what the same load
  costs the machine, the floor of the next row;
- while 100 ``%arun --bg`` jobs each print a line every 10 ms, with the kernel's CPU per
  job-second (user + system of the kernel process over a second of ticking with no
  requests, by job and second);
- while IPython's ``%%bash`` streams one such producer in the foreground (the anchor: the
  kernel is blocked, requests wait in the queue; four of them through ``%%bash`` broke the
  kernel's sockets here).

Run: ``python benchmarks/bench_jobs.py``. Read the ratios of the p95s; absolute times move
with the machine's load.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from kernelbench import Kernel, fmt_ms, table

PY = sys.executable
SECONDS = 4
# 50 kB every 10 ms: about 5 MB/s of 100-character lines, for SECONDS seconds.
PRODUCER = (
    f"{PY} -c \"import sys, time; chunk = ('x' * 99 + chr(10)) * 500; "
    f'[(sys.stdout.write(chunk), sys.stdout.flush(), time.sleep(0.01)) for _ in range({SECONDS * 100})]"'
)


# A line every 10 ms for SECONDS + 2 seconds (start-up, and a second to measure CPU): the
# many-jobs case. One process each, no fork per line (a shell's `sleep 0.01` would be 10,000
# forks a second for 100 jobs, which is the machine's limit, not the kernel's).
TICKER = (
    f'{PY} -c "import time; '
    f"[(print('tick', i, flush=True), time.sleep(0.01)) for i in range({(SECONDS + 2) * 100})]\""
)
MANY = 100
CPU = "(lambda t: t.user + t.system)(__import__('os').times())"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def reply_times(kernel: Kernel, until: float) -> list[float]:
    times = []
    while time.monotonic() < until:
        t0 = time.monotonic()
        ex = kernel.execute("1+1")
        assert ex.result == "2"
        times.append(ex.idle_at - t0)
    return times


BLOCKED_LIMIT = 120.0
"""Seconds a request may wait behind ``%%bash`` before the anchor is reported as blocked."""


def anchor_row(blocked: list[float], cut_at: float | None, idle_p95: float) -> list[str]:
    """The ``%%bash`` row; "blocked ≥ N s" when a request did not get through at all."""
    name = "`%%bash` streaming one such producer (anchor)"
    if cut_at is not None:
        worst = f"blocked ≥ {cut_at:.0f} s"
        return [
            name,
            f"{len(blocked)} + 1 unanswered",
            fmt_ms(statistics.median(blocked)) if blocked else "-",
            worst,
            worst,
        ]
    return [
        name,
        str(len(blocked)),
        fmt_ms(statistics.median(blocked)),
        fmt_ms(max(blocked)),
        f"{max(blocked) / idle_p95:.0f}x (max: few requests get through)",
    ]


def main() -> None:
    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    try:
        idle = reply_times(kernel, time.monotonic() + SECONDS)

        kernel.run("\n".join(f"_j{i} = %arun --bg {PRODUCER}" for i in range(4)))
        busy = reply_times(kernel, time.monotonic() + SECONDS - 0.5)
        kernel.run("for _j in (_j0, _j1, _j2, _j3): await _j.wait()")

        outside = [subprocess.Popen(TICKER, shell=True, stdout=subprocess.DEVNULL) for _ in range(MANY)]
        time.sleep(0.5)
        machine = reply_times(kernel, time.monotonic() + SECONDS)
        for proc in outside:
            proc.wait()

        kernel.run("\n".join(f"_m{i} = %arun -q --bg {TICKER}" for i in range(MANY)))
        kernel.run(f"_many = [globals()[f'_m{{i}}'] for i in range({MANY})]")
        kernel.run("for _j in _many: await _j.expect('tick', timeout=60)")  # every one is ticking
        cpu0, t0 = kernel.eval(CPU), time.monotonic()
        time.sleep(1.0)  # no requests meanwhile: they cost CPU of their own
        many_cpu = (kernel.eval(CPU) - cpu0) / (MANY * (time.monotonic() - t0))
        many = reply_times(kernel, time.monotonic() + SECONDS)
        kernel.run("for _j in _many: await _j.wait()")

    finally:
        kernel.shutdown()
    # The anchor in a kernel of its own: %%bash blocks it for the whole run.
    kernel = Kernel()
    try:
        bash = kernel.submit(f"%%bash\n{PRODUCER}")
        kernel.wait_until(lambda: bool(bash.stdout), what="%%bash to start streaming")
        blocked: list[float] = []
        cut_at: float | None = None  # a request still blocked when we stopped waiting
        while not bash.done:
            t0 = time.monotonic()
            try:
                ex = kernel.execute("1+1", timeout=BLOCKED_LIMIT)
            except TimeoutError:
                cut_at = time.monotonic() - t0
                break
            blocked.append(ex.idle_at - t0)
        if not bash.done:  # end the cell first: a kernel shut down under a running cell
            kernel.manager.interrupt_kernel()  # prints a traceback when the cell's reply fails
            kernel.wait_until(lambda: bash.done, timeout=60, what="%%bash to end on an interrupt")
    finally:
        kernel.shutdown()

    rows = [
        ["", "requests", "median", "p95", "p95 vs idle"],
        ["kernel idle", str(len(idle)), fmt_ms(statistics.median(idle)), fmt_ms(p95(idle)), "1.00x"],
        [
            "4 `%arun --bg` jobs streaming",
            str(len(busy)),
            fmt_ms(statistics.median(busy)),
            fmt_ms(p95(busy)),
            f"{p95(busy) / p95(idle):.2f}x",
        ],
        [
            f"{MANY} such commands outside the kernel, to /dev/null (the machine's share)",
            str(len(machine)),
            fmt_ms(statistics.median(machine)),
            fmt_ms(p95(machine)),
            f"{p95(machine) / p95(idle):.2f}x",
        ],
        [
            f"{MANY} `%arun --bg` jobs, a line every 10 ms each",
            str(len(many)),
            fmt_ms(statistics.median(many)),
            fmt_ms(p95(many)),
            f"{p95(many) / p95(idle):.2f}x",
        ],
        anchor_row(blocked, cut_at, p95(idle)),
    ]
    print(f"\n{SECONDS} s of each; {time.strftime('%Y-%m-%d')}")
    print(table(rows))
    print(f"kernel CPU with {MANY} jobs ticking (no requests): {many_cpu * 1000:.1f} ms per job-second")


if __name__ == "__main__":
    main()
