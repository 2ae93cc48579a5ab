"""``%%arun --parallel -j 8`` against ``xargs -P 8`` and GNU ``parallel -j 8``, in one run.

Measures, as the frontend sees it: the cell's wall time over 500 lines of ``true`` (with
``-q``) and over 500 lines of ``echo N`` (shown, each line labelled), and the kernel's CPU
per command (user + system of the kernel process, from ``os.times()``: the stable figure).
The anchors run the same lines from the kernel, 8 at a time, each line in a shell as
``%%arun --parallel`` runs it: ``xargs -P 8 -I{} sh -c {}`` and ``parallel -j 8`` (Debian's
package ``parallel``, installed here when missing and we are root). A floor beside them:
bare ``asyncio.create_subprocess_exec`` in the same kernel, 8 at once, no shell, output
read and dropped (what any asyncio runner in a kernel pays at least). Medians of the rounds,
alternating the order. Targets: at most 1.2x xargs, faster than GNU parallel.

Run: ``make bench`` (or ``python benchmarks/bench_fanout.py [--rounds N]``). Shared, noisy
machines: read the medians and ratios, not one absolute time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from kernelbench import Kernel, median, table, timed

COMMANDS = 500
CPU = "(lambda t: t.user + t.system)(__import__('os').times())"
FLOOR = "asyncio, 8 at once (floor)"
FLOOR_SETUP = """
import asyncio as _asyncio, subprocess as _subprocess

async def _asyncio_fan(path, at_once=8):
    gate = _asyncio.Semaphore(at_once)

    async def one(line):
        async with gate:
            proc = await _asyncio.create_subprocess_exec(
                *line.split(), stdin=_subprocess.DEVNULL, stdout=_subprocess.PIPE,
                stderr=_subprocess.PIPE, start_new_session=True,
            )
            await proc.communicate()

    with open(path) as f:
        await _asyncio.gather(*(one(line) for line in f.read().splitlines()))
"""
"""The least any asyncio runner in this kernel does for a line: spawn it without a shell,
read its output to the end, wait for it; no display, no log, no Result."""


def ensure_gnu_parallel() -> str | None:
    """The path of GNU parallel, installed with apt-get if missing and we are root."""
    if shutil.which("parallel") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "parallel"], capture_output=True, env=env)
    return shutil.which("parallel")


def cells(lines_file: str, gnu: str | None, quiet: bool) -> dict[str, str]:
    with open(lines_file) as f:
        body = f.read()
    run = "import subprocess\n_ = subprocess.run({!r}, shell=True, capture_output=True, check=True)"
    magic = f"%%arun --parallel -j 8{' -q' if quiet else ''}"
    found = {
        magic: f"{magic}\n{body}",
        "xargs -P 8": run.format(f"xargs -P 8 -I{{}} sh -c {{}} < {lines_file}"),
    }
    if gnu is not None:
        found["GNU parallel -j 8"] = run.format(f"{gnu} -j 8 < {lines_file}")
    found[FLOOR] = f"await _asyncio_fan({lines_file!r})"
    return found


def measure(kernel: Kernel, contenders: dict[str, str], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall seconds, kernel CPU seconds) of each cell, alternating the order."""
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            before = kernel.eval(CPU)
            walls[name].append(timed(kernel, contenders[name]).seconds)
            cpus[name].append(kernel.eval(CPU) - before)
    return {name: (median(walls[name]), median(cpus[name])) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement (median)")
    opts = parser.parse_args()
    gnu = ensure_gnu_parallel()
    if gnu is None:
        print(
            "bench_fanout: GNU parallel is missing and cannot be installed: its column is left out",
            file=sys.stderr,
        )
    workdir = tempfile.mkdtemp(prefix="bench-fanout-")
    kernel = Kernel()
    try:
        kernel.run("%load_ext asyncmagic")
        kernel.run(FLOOR_SETUP)
        rows = [["lines", "contender", "wall (median)", "vs xargs -P 8", "kernel CPU per command"]]
        for what, line, quiet in [("true", "true", True), ("echo N", "echo {}", False)]:
            path = os.path.join(workdir, what.replace(" ", "_"))
            with open(path, "w") as f:
                f.write("".join(line.format(n) + "\n" for n in range(1, COMMANDS + 1)))
            timed(kernel, cells(path, gnu, quiet)[next(iter(cells(path, gnu, quiet)))])  # warm-up
            found = measure(kernel, cells(path, gnu, quiet), opts.rounds)
            anchor = found["xargs -P 8"][0]
            for name, (wall, cpu) in found.items():
                rows.append(
                    [
                        f"{COMMANDS} x {what}",
                        name,
                        f"{wall * 1000:.0f} ms",
                        f"{wall / anchor:.2f}x",
                        f"{cpu / COMMANDS * 1000:.2f} ms",
                    ]
                )
    finally:
        kernel.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nrounds: {opts.rounds}; {time.strftime('%Y-%m-%d')}; CPUs: {os.cpu_count()}")
    print(table(rows))


if __name__ == "__main__":
    main()
