"""``%%arun --host`` against Debian's pssh (parallel-ssh) and a ``for h; do ssh $h … & done; wait``
loop, on the same real sshd servers on 127.0.0.1, in one run.

Measures:
- the wall time of ``uname -a`` on 1, 5 and 20 hosts, cold (no connection open: the
  extension is reloaded first, which closes them) and warm (connections reused), as the
  frontend sees the cell; the anchors are timed as subprocesses. pssh is also run over
  OpenSSH's own connection sharing (ControlMaster/ControlPersist), its warm case;
- the kernel's CPU time per cell (user + system, from /proc), the stable figure;
- first-line latency of ``for i in 1 2 3; do echo $i; sleep 1; done`` on one host: from the
  remote printing a line (its CLOCK_REALTIME: the hosts are this machine) to the client
  receiving it. pssh prints a host's output when it ends (``-i``), so its figure is ~2 s.

Run: ``make bench`` (or ``python benchmarks/bench_ssh.py [--rounds N]``). Needs root and
Debian's openssh-server and pssh (``scripts/install_sshd.sh``). Shared, noisy machines:
read the medians and ratios, not one absolute time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from kernelbench import Kernel, median, table, timed
from sshservers import SSHServers, why_not

SIZES = (1, 5, 20)
PLAIN_USER = "asyncmagic-bench"
"""A login with Debian's default dotfiles, created for the second run."""
TICKS = 'for i in 1 2 3; do echo "tick $(date +%s.%N)"; sleep 1; done'


def kernel_cpu(pid: int) -> float:
    """User + system seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ssh_options(servers: SSHServers) -> list[str]:
    return [
        "-F",
        str(servers.ssh_config),
        "-o",
        f"UserKnownHostsFile={servers.known_hosts}",
        "-o",
        "BatchMode=yes",
    ]


def mux_options(servers: SSHServers) -> list[str]:
    return [
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={servers.root}/cm-%h",
        "-o",
        "ControlPersist=120",
    ]


def run_pssh(servers: SSHServers, hosts: list[str], extra: list[str]) -> float:
    options = " ".join(ssh_options(servers) + extra)
    argv = [
        "parallel-ssh",
        "-p",
        str(len(hosts)),
        "-t",
        "60",
        "-x",
        options,
        "-H",
        " ".join(hosts),
        "uname -a",
    ]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


def run_loop(servers: SSHServers, hosts: list[str]) -> float:
    ssh = " ".join(["ssh", *ssh_options(servers)])
    script = f"for h in {' '.join(hosts)}; do {ssh} $h uname -a & done; wait"
    began = time.monotonic()
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    elapsed = time.monotonic() - began
    assert done.returncode == 0 and done.stdout.count("\n") == len(hosts), done.stderr
    return elapsed


def run_cell(kernel: Kernel, hosts: list[str], *, cold: bool, config: str) -> tuple[float, float]:
    """(wall seconds, kernel CPU seconds) of one ``%%arun --host`` cell."""
    if cold:
        kernel.run("%unload_ext asyncmagic")
        kernel.run("%load_ext asyncmagic")
        kernel.run(config)
    cpu = kernel_cpu(kernel.pid)
    t = timed(kernel, f"%%arun --host {','.join(hosts)} -q -r rs\nuname -a\n", timeout=120)
    used = kernel_cpu(kernel.pid) - cpu
    assert kernel.eval("all(r.ok for r in rs) and len(rs)") == len(hosts)
    return t.seconds, used


def first_line_kernel(kernel: Kernel, host: str) -> float:
    offset = time.time() - time.monotonic()  # the kernel client's times are monotonic
    ex = kernel.execute(f"%%arun --host {host}\n{TICKS}\n", timeout=60)
    delays = []
    for t, msg in ex.messages:
        if msg["msg_type"] == "stream":
            for line in msg["content"]["text"].splitlines():
                if line.startswith("tick "):
                    delays.append(t + offset - float(line.split()[1]))
    assert len(delays) == 3, ex.streams
    return median(delays)


def first_line_ssh(servers: SSHServers, host: str, extra: list[str]) -> float:
    proc = subprocess.Popen(
        ["ssh", *ssh_options(servers), *extra, host, TICKS], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    delays = [time.time() - float(line.split()[1]) for line in proc.stdout if line.startswith("tick ")]
    proc.wait()
    return median(delays)


def first_line_pssh(servers: SSHServers, host: str) -> float:
    options = " ".join(ssh_options(servers))
    argv = ["parallel-ssh", "-i", "-t", "60", "-x", options, "-H", host, TICKS]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    delays = [time.time() - float(line.split()[1]) for line in proc.stdout if line.startswith("tick ")]
    proc.wait()
    return median(delays)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of each measurement (median is reported)"
    )
    opts = parser.parse_args()
    reason = why_not() or (
        None if shutil.which("parallel-ssh") else "parallel-ssh is missing (Debian's pssh)"
    )
    if reason is not None:
        print(f"bench_ssh: skipped: {reason}", file=sys.stderr)
        sys.exit(1)
    for user, login in ((PLAIN_USER, "a plain user"), ("", "root, whose .bashrc runs pyenv init")):
        servers = SSHServers(max(SIZES), user=user)
        print(f"\nlogged in as {login}:")
        measure(servers, opts.rounds)


def measure(servers: SSHServers, rounds: int) -> None:
    kernel = Kernel()
    try:
        config = servers.config_lines()
        kernel.run("%load_ext asyncmagic")
        kernel.run(config)
        rows = [
            [
                "hosts",
                "%%arun cold",
                "%%arun warm",
                "pssh",
                "pssh + ControlMaster",
                "ssh & loop",
                "cold / pssh",
                "warm / pssh",
                "kernel CPU cold",
                "kernel CPU warm",
            ]
        ]
        for size in SIZES:
            hosts = servers.aliases[:size]
            cold, warm, cpu_cold, cpu_warm, pssh, mux, loop = [], [], [], [], [], [], []
            subprocess.run(["parallel-ssh", "-x", " ".join(ssh_options(servers) + mux_options(servers)),
                            "-H", " ".join(hosts), "true"], capture_output=True)  # fmt: skip
            for _ in range(rounds):  # each round runs every contender once, in turn
                wall, cpu = run_cell(kernel, hosts, cold=True, config=config)
                cold.append(wall)
                cpu_cold.append(cpu)
                wall, cpu = run_cell(kernel, hosts, cold=False, config=config)
                warm.append(wall)
                cpu_warm.append(cpu)
                pssh.append(run_pssh(servers, hosts, []))
                mux.append(run_pssh(servers, hosts, mux_options(servers)))
                loop.append(run_loop(servers, hosts))
            m = {name: median(v) for name, v in [("cold", cold), ("warm", warm), ("pssh", pssh)]}
            rows.append(
                [
                    str(size),
                    f"{m['cold'] * 1000:.0f} ms",
                    f"{m['warm'] * 1000:.0f} ms",
                    f"{m['pssh'] * 1000:.0f} ms",
                    f"{median(mux) * 1000:.0f} ms",
                    f"{median(loop) * 1000:.0f} ms",
                    f"{m['cold'] / m['pssh']:.2f}x",
                    f"{m['warm'] / m['pssh']:.2f}x",
                    f"{median(cpu_cold) * 1000:.0f} ms",
                    f"{median(cpu_warm) * 1000:.0f} ms",
                ]
            )
        print(f"uname -a on N loopback hosts: medians of {rounds} rounds, wall as the client sees it")
        print(table(rows))
        latency = [
            ["first line after the remote printed it", "median of 3 lines"],
            ["%%arun --host (warm)", f"{first_line_kernel(kernel, 'host0') * 1000:.1f} ms"],
            ["ssh host", f"{first_line_ssh(servers, 'host0', []) * 1000:.1f} ms"],
            ["pssh -i", f"{first_line_pssh(servers, 'host0') * 1000:.0f} ms"],
        ]
        print()
        print(table(latency))
    finally:
        kernel.shutdown()
        subprocess.run(
            ["ssh", *ssh_options(servers), *mux_options(servers), "-O", "exit", "host0"], capture_output=True
        )
        servers.close()


if __name__ == "__main__":
    main()
