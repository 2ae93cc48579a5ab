"""%apipe against the same pipeline run by bash, and a Python stage against one python3 process.

- 200 MB through ``cat FILE | tr a-z A-Z | wc -l``: throughput of ``%apipe`` (a cell in a
  real kernel) against ``bash -c`` running the same pipeline (a cell too, via subprocess).
- 2,000,000 lines through one Python stage that upper-cases: lines per second of
  ``%apipe cat FILE | py:upper | wc -l`` against ``python3 -c`` doing the same transform
  in a single process.

Run: ``python benchmarks/bench_apipe.py [--rounds N]``; medians, interleaved rounds.
"""

from __future__ import annotations

import argparse
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
    big = work / "200mb.txt"
    with open(big, "w") as f:
        line = "the quick brown fox jumps over the lazy dog " * 2 + "\n"
        f.write(line * (200_000_000 // len(line)))
    lines = work / "lines.txt"
    lines.write_text("".join(f"line number {i} of the test\n" for i in range(2_000_000)))
    size_mb = big.stat().st_size / 1e6

    kernel = Kernel()
    kernel.run("%load_ext asyncmagic\ndef upper(lines):\n    for line in lines:\n        yield line.upper()")
    cells = {
        "apipe": f"%apipe -q cat {big} | tr a-z A-Z | wc -l",
        "bash": f"import subprocess\n_ = subprocess.run(['bash', '-c', 'cat {big} | tr a-z A-Z | wc -l'], "
        "capture_output=True)",
        "py-stage": f"%apipe -q cat {lines} | py:upper | wc -l",
        "python3": "import subprocess\n_ = subprocess.run([sys.executable, '-c', "
        f"'import sys\\nfor l in open(\"{lines}\"): sys.stdout.write(l.upper())'], "
        "stdout=subprocess.DEVNULL)",
    }
    kernel.run("import sys")
    times: dict[str, list[float]] = {k: [] for k in cells}
    try:
        for round_ in range(opts.rounds):
            # Alternate the order: whichever runs first in a round meets a colder machine.
            names = list(cells) if round_ % 2 == 0 else list(reversed(cells))
            for name in names:
                times[name].append(timed(kernel, cells[name]).seconds)
    finally:
        kernel.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        ["", "%apipe", "anchor", "ratio (target)"],
        [
            f"`cat \\| tr \\| wc -l` over {size_mb:.0f} MB",
            f"{size_mb / med['apipe']:.0f} MB/s",
            f"{size_mb / med['bash']:.0f} MB/s (bash -c)",
            f"{med['bash'] / med['apipe']:.2f}x bash's throughput (>= 0.9)",
        ],
        [
            "one Python stage, 2,000,000 lines",
            f"{2e6 / med['py-stage'] / 1e6:.2f} M lines/s",
            f"{2e6 / med['python3'] / 1e6:.2f} M lines/s (python3 -c)",
            f"{med['python3'] / med['py-stage']:.2f}x (>= 0.5)",
        ],
    ]
    print(f"\nrounds: {opts.rounds}; {time.strftime('%Y-%m-%d')}; {sys.version.split()[0]}")
    print(table(rows))


if __name__ == "__main__":
    main()
