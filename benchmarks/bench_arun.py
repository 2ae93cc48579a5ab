"""%%arun against IPython's %%bash and !cmd, through a real kernel, in one run.

Measures, as the frontend sees it:
- first-line latency: from the child printing a line (it prints its CLOCK_MONOTONIC time)
  to the client receiving the stream message;
- 20 MB of output in 100-character lines: the cell's wall time as a ratio to
  ``subprocess.run(capture_output=True)`` plus one print of the whole output (moving 20 MB
  to the frontend with no streaming at all), and the number of stream messages. ``%%arun``
  shows the head and tail of so much output by default; ``--max-lines 0`` shows all of it,
  at the pace jupyter_server's rate limits allow (80% of 1 MB/s);
- overhead per call of ``echo hi``, the order of the contenders turned each round, with two
  floors beside them: an empty cell, and bare ``asyncio.create_subprocess_exec`` in a cell.

Run: ``make bench`` (or ``python benchmarks/bench_arun.py [--rounds N]``). The machines are
shared and noisy: read the medians and ratios, not one absolute time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kernelbench import Kernel, fmt_ms, median, table, timed

PY = sys.executable
TICKER = (
    f'{PY} -c "import time; '
    "[(print('t', time.monotonic(), flush=True), time.sleep(0.1)) for i in range(20)]\""
)


def first_line_latency(kernel: Kernel, cell: str) -> float:
    """Median delay from the child's print to the client's receipt, over 20 spaced lines."""
    ex = kernel.execute(cell, timeout=120)
    delays = []
    pending = ""
    for t, msg in ex.messages:
        if msg["msg_type"] != "stream":
            continue
        pending += msg["content"]["text"]
        *lines, pending = pending.split("\n")
        # A line counts as received with the message that completes it.
        delays += [t - float(line.split()[1]) for line in lines if line.startswith("t ")]
    assert len(delays) == 20, (cell, ex.streams[:3])
    return median(delays)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of each measurement (median is reported)"
    )
    parser.add_argument("--bash-rounds", type=int, default=1, help="rounds of the slow %%%%bash 20 MB case")
    opts = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="asyncmagic-bench-"))
    data = workdir / "20mb.txt"
    data.write_text(("x" * 99 + "\n") * 200_000)
    kernel = Kernel()
    # --max-lines 0 here means every byte: the notebook's page ceiling (2 MB) is lifted
    kernel.run("%load_ext asyncmagic\n%config AsyncMagics.page_limit = 0")
    try:
        lat = {"arun": [], "bash": [], "bang": []}
        for _ in range(opts.rounds):
            lat["arun"].append(first_line_latency(kernel, f"%%arun\n{TICKER}"))
            lat["bash"].append(first_line_latency(kernel, f"%%bash\n{TICKER}"))
            lat["bang"].append(first_line_latency(kernel, f"!{TICKER}"))

        big = {
            "devnull": f"import subprocess\n_ = subprocess.run(['cat', '{data}'], stdout=subprocess.DEVNULL)",
            "baseline": (
                "import subprocess\n"
                f"print(subprocess.run(['cat', '{data}'], capture_output=True, text=True).stdout, end='')"
            ),
            "arun": f"%%arun\ncat {data}",
            "arun_all": f"%%arun --max-lines 0\ncat {data}",
            "bang": f"!cat {data}",
            "bash": f"%%bash\ncat {data}",
        }
        flood: dict[str, list] = {k: [] for k in big}
        for r in range(max(opts.rounds, opts.bash_rounds)):
            for name, cell in big.items():
                if name == "bash" and r >= opts.bash_rounds:
                    continue
                if name != "bash" and r >= opts.rounds:
                    continue
                flood[name].append(timed(kernel, cell))
        for name in ("arun_all", "baseline", "bash", "bang"):
            got = sum(t.stream_bytes for t in flood[name][:1])
            assert got >= 20_000_000, f"{name} delivered {got} bytes"
        assert "not shown; full output: " in flood["arun"][0].execution.stderr  # head, notice, tail

        calls = {
            "arun": "%%arun\necho hi",
            "bash": "%%bash\necho hi",
            "bang": "!echo hi",
            "subprocess": (
                "import subprocess\n"
                "print(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout, end='')"
            ),
            # The floors: what every cell costs, and the least an asyncio command can cost.
            "empty": "pass",
            "asyncio": (
                "import asyncio\n"
                "_p = await asyncio.create_subprocess_exec('echo', 'hi', stdout=asyncio.subprocess.PIPE)\n"
                "print((await _p.stdout.read()).decode(), end='', flush=True)\n"
                "await _p.wait()"
            ),
        }
        overhead: dict[str, list[float]] = {k: [] for k in calls}
        names = list(calls)
        for turn in range(30 * opts.rounds):
            # The order turns each time: the cell after `!cmd` pays about 3 ms more, whichever it is.
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                overhead[name].append(timed(kernel, calls[name]).seconds)
    finally:
        kernel.shutdown()

    base = median([t.seconds for t in flood["baseline"]])
    devnull = median([t.seconds for t in flood["devnull"]])

    def flood_cells(name: str) -> list[str]:
        secs = median([t.seconds for t in flood[name]])
        msgs = median([t.stream_messages for t in flood[name]])
        sent = median([t.stream_bytes for t in flood[name]])
        return [f"{secs / base:.2f}x", f"{secs / devnull:.0f}x", f"{msgs:,.0f}", f"{sent / 1e6:,.1f} MB"]

    columns = ("arun", "arun_all", "bash", "bang", "baseline")
    rows = [
        ["", "%%arun", "%%arun --max-lines 0", "%%bash", "!cmd", "subprocess.run + print"],
        ["first-line latency (median)"]
        + [fmt_ms(median(lat["arun"])), "(same)"]
        + [fmt_ms(median(lat[k])) for k in ("bash", "bang")]
        + ["at process end"],
    ]
    per = {k: flood_cells(k) for k in columns}
    rows.append(["20 MB: time vs subprocess.run + print"] + [per[k][0] for k in columns])
    rows.append(["20 MB: time vs writing to /dev/null"] + [per[k][1] for k in columns])
    rows.append(["20 MB: stream messages"] + [per[k][2] for k in columns])
    rows.append(["20 MB: bytes sent to the client"] + [per[k][3] for k in columns])
    calls_in = ("arun", "subprocess", "bash", "bang", "subprocess")
    rows.append(
        ["overhead per call (median cell time)"]
        + [fmt_ms(median(overhead[k])) if i != 1 else "(same)" for i, k in enumerate(calls_in)]
    )
    rows.append(
        ["overhead per call vs %%bash"]
        + [
            f"{median(overhead[k]) / median(overhead['bash']):.2f}x" if i != 1 else "(same)"
            for i, k in enumerate(calls_in)
        ]
    )
    print(f"\nrounds: {opts.rounds} ({opts.bash_rounds} for %%bash on 20 MB); {time.strftime('%Y-%m-%d')}")
    print(table(rows))
    cell = {k: median(overhead[k]) for k in overhead}
    above = {k: fmt_ms(cell[k] - cell["empty"]) for k in ("arun", "bash", "asyncio")}
    print(
        f"per call, the floors in the same run: an empty cell {fmt_ms(cell['empty'])}; "
        f"bare asyncio (create_subprocess_exec, print, wait) {fmt_ms(cell['asyncio'])}, "
        f"{cell['asyncio'] / cell['bash']:.2f}x %%bash. Above an empty cell: "
        f"%%arun {above['arun']}, %%bash {above['bash']}, bare asyncio {above['asyncio']}"
    )


if __name__ == "__main__":
    main()
