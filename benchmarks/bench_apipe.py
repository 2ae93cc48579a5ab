"""%apipe against the same pipeline run by bash, and a Python stage against one python3 process.

- 200 MB and 1 GB through ``cat FILE | tr a-z A-Z | wc -l``: throughput of ``%apipe`` (a
  cell in a real kernel) against ``bash -c`` running the same pipeline (a cell too, via
  subprocess), and the kernel's CPU during the pipeline (user + system, ``os.times()``).
- 2,000,000 lines through one Python stage that upper-cases: lines per second of
  ``%apipe cat FILE | py:upper | wc -l`` against ``python3 -c`` doing the same transform
  in a single process.

Run: ``python benchmarks/bench_apipe.py [--rounds N]``; medians, interleaved rounds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernelbench import Kernel, table, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asyncmagic-bench-"))
    try:
        run(work, opts.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


SIZES = (200_000_000, 1_000_000_000)
CPU = "(lambda t: t.user + t.system)(__import__('os').times())"


def run(work: Path, rounds: int) -> None:
    line = "the quick brown fox jumps over the lazy dog " * 2 + "\n"
    bigs = {}
    for size in SIZES:
        bigs[size] = work / f"{size // 1_000_000}mb.txt"
        with open(bigs[size], "w") as f:
            for _ in range(size // 100_000_000):
                f.write(line * (100_000_000 // len(line)))
    lines = work / "lines.txt"
    lines.write_text("".join(f"line number {i} of the test\n" for i in range(2_000_000)))

    kernel = Kernel()
    kernel.run("%load_ext asyncmagic\ndef upper(lines):\n    for line in lines:\n        yield line.upper()")
    cells = {}
    for size, big in bigs.items():
        cells[f"apipe {size}"] = f"%apipe -q cat {big} | tr a-z A-Z | wc -l"
        cells[f"bash {size}"] = (
            f"import subprocess\n_ = subprocess.run(['bash', '-c', 'cat {big} | tr a-z A-Z | wc -l'], "
            "capture_output=True)"
        )
    cells |= {
        "py-stage": f"%apipe -q cat {lines} | py:upper | wc -l",
        "python3": "import subprocess\n_ = subprocess.run([sys.executable, '-c', "
        f"'import sys\\nfor l in open(\"{lines}\"): sys.stdout.write(l.upper())'], "
        "stdout=subprocess.DEVNULL)",
    }
    kernel.run("import sys")
    times: dict[str, list[float]] = {k: [] for k in cells}
    cpus: dict[str, list[float]] = {k: [] for k in cells}
    try:
        for round_ in range(rounds):
            # Alternate the order: whichever runs first in a round meets a colder machine.
            names = list(cells) if round_ % 2 == 0 else list(reversed(cells))
            for name in names:
                before = kernel.eval(CPU)
                times[name].append(timed(kernel, cells[name]).seconds)
                cpus[name].append(kernel.eval(CPU) - before)
    finally:
        kernel.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    rows = [["", "%apipe", "anchor", "ratio (target)", "kernel CPU, %apipe"]]
    for size in SIZES:
        mb, target = size / 1e6, 0.9 if size < 1e9 else 0.95
        rows.append(
            [
                f"`cat \\| tr \\| wc -l` over {mb:,.0f} MB",
                f"{mb / med[f'apipe {size}']:.0f} MB/s",
                f"{mb / med[f'bash {size}']:.0f} MB/s (bash -c)",
                f"{med[f'bash {size}'] / med[f'apipe {size}']:.2f}x bash's (>= {target})",
                f"{cpu[f'apipe {size}'] * 1000:.0f} ms",
            ]
        )
    rows += [
        [
            "one Python stage, 2,000,000 lines",
            f"{2e6 / med['py-stage'] / 1e6:.2f} M lines/s",
            f"{2e6 / med['python3'] / 1e6:.2f} M lines/s (python3 -c)",
            f"{med['python3'] / med['py-stage']:.2f}x (>= 0.5)",
            f"{cpu['py-stage'] * 1000:.0f} ms",
        ],
    ]
    print(f"\nrounds: {rounds}; {time.strftime('%Y-%m-%d')}; {sys.version.split()[0]}")
    print(table(rows))


if __name__ == "__main__":
    main()
