"""``%%arun --host``: a real kernel, read through jupyter_client, running cells on real sshd
servers on 127.0.0.1 (each sets ``ASYNCMAGIC_HOST`` to its own alias, so a cell can tell
the "machines" apart). The hosts are this machine: what they run is found in /proc."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psutil
import pytest
from kernelclient import Execution, Kernel, found, none_left, processes_with, sleeping, usage_error
from sshservers import SSHServers, keygen, why_not

BOUND = 20.0


@pytest.fixture(scope="module")
def k(ssh_servers: SSHServers) -> Iterator[Kernel]:
    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    kernel.run(ssh_servers.config_lines())
    kernel.ssh_config_lines = ssh_servers.config_lines()  # type: ignore[attr-defined]
    yield kernel
    kernel.shutdown()


def fresh_kernel(servers: SSHServers) -> Kernel:
    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    kernel.run(servers.config_lines())
    return kernel


def one_line_error(ex: Execution, ename: str) -> str:
    assert ex.error is not None, ex.streams
    assert ex.error["ename"] == ename, ex.error
    assert len(ex.error["traceback"]) == 1, ex.error["traceback"]
    return ex.error["evalue"]


def tables(ex: Execution) -> str:
    return "".join(
        m["content"]["data"]["text/plain"] for m in ex.of_type("display_data", "update_display_data")
    )


def labelled_lines(text: str, host: str) -> list[str]:
    return [line.removeprefix(f"[{host}] ") for line in text.splitlines() if line.startswith(f"[{host}] ")]


def test_each_host_streams_its_lines_in_order_labelled_and_a_summary_ends_the_cell(k, ssh_servers):
    cell = (
        "%%arun --host host0,host1,host2 -t 30\n"
        'for i in 1 2 3; do echo "$ASYNCMAGIC_HOST line $i"; sleep 0.3; done\n'
        'echo "$ASYNCMAGIC_HOST err" >&2\n'
    )
    ex = k.execute(cell, timeout=BOUND)
    assert ex.error is None, ex.streams
    for host in ssh_servers.aliases:
        assert labelled_lines(ex.stdout, host) == [f"{host} line {i}" for i in (1, 2, 3)]
        assert labelled_lines(ex.stderr, host) == [f"{host} err"]
    # live: the first lines reached the client while the hosts were still running
    first = ex.first_time(lambda m: m["msg_type"] == "stream" and "line 1" in m["content"]["text"])
    last = ex.first_time(lambda m: m["msg_type"] == "stream" and "line 3" in m["content"]["text"])
    assert first is not None and last is not None and last - first > 0.4
    summary = tables(ex)
    assert "3 hosts, 0 failed" in summary
    assert all(host in summary for host in ssh_servers.aliases)
    assert "<table>" in "".join(m["content"]["data"].get("text/html", "") for m in ex.of_type("display_data"))


def test_a_failing_host_among_good_ones_raises_once_naming_it(k):
    cell = (
        "%%arun --host host0,host1,host2 -r rs\n"
        'echo "on $ASYNCMAGIC_HOST"; [ "$ASYNCMAGIC_HOST" != host1 ] || exit 3\n'
    )
    ex = k.execute(cell, timeout=BOUND)
    assert one_line_error(ex, "HostError") == "1 of 3 hosts failed: host1: exit 3"
    assert "3 hosts, 1 failed" in tables(ex)
    assert k.eval("[(r.host, r.returncode, r.stdout) for r in rs]") == [
        ("host0", 0, "on host0\n"),
        ("host1", 3, "on host1\n"),
        ("host2", 0, "on host2\n"),
    ]
    ex = k.execute("%arun --host host1 --no-raise false")
    assert ex.error is None and "1 of 1 hosts failed: host1: exit 1" in ex.stderr


def test_one_host_needs_no_labels_and_no_table(k):
    ex = k.execute("x = %arun --host host2 -o out echo one\nprint(repr(out), x[0].host)", timeout=BOUND)
    assert ex.error is None, ex.streams
    assert ex.stdout == "one\n'one\\n' host2\n"
    assert tables(ex).count("hosts,") == 0


def test_options_mean_the_same_on_a_host(k, tmp_path):
    k.run("lines = ['a', 'b']")
    ex = k.execute(
        f"%%arun --host host0,host1 --stdin lines --cwd {tmp_path} --env GREETING=hi -q -o out\n"
        'cat; pwd; echo "$GREETING"\n',
        timeout=BOUND,
    )
    assert ex.error is None and ex.stdout == "", ex.streams
    assert k.eval("out") == f"a\nb\n{tmp_path}\nhi\n" * 2
    ex = k.execute("%arun --host host0 --label echo hi", timeout=BOUND)
    assert ex.stdout == "[host0] hi\n", ex.streams
    ex = k.execute("%arun --host host0 --pty sh -c 'test -t 1 && echo tty'", timeout=BOUND)
    assert ex.stdout == "tty\n", ex.streams
    ex = k.execute("%%arun --host host0,host1 --max-lines 4 -q -r rs\nseq 100\n", timeout=BOUND)
    assert k.eval("[len(r.lines) for r in rs]") == [100, 100]


def test_hosts_from_a_python_list(k):
    k.run("fleet = ['host0', 'host2']")
    ex = k.execute("%%arun --host {fleet} -q -r a\necho $ASYNCMAGIC_HOST\n", timeout=BOUND)
    assert ex.error is None, ex.streams
    ex = k.execute("%%arun --hosts fleet -q -r b\necho $ASYNCMAGIC_HOST\n", timeout=BOUND)
    assert ex.error is None, ex.streams
    assert k.eval("[r.stdout for r in a] == [r.stdout for r in b] == ['host0\\n', 'host2\\n']")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--host host0,host0 true", "--host: host0 is named twice"),
        ("--host host0 --parallel true", "--host does not go with --parallel"),
        ("--host host0 --keep true", "--host does not go with --keep"),
        ("--host 'web:http' true", "--host: not a port in host 'web:http': 'http'"),
        ("--hosts nothing_here true", "--hosts: no variable named 'nothing_here'"),
        ("--host host0 -j 0 true", "-j/--jobs must be 1 or more, not 0"),
        ("--host host0 --env 'A-B=1' true", "--env on a host: 'A-B' is not a shell variable name"),
    ],
)
def test_bad_host_options_are_one_line_and_start_nothing(k, line, says):
    assert usage_error(k.execute(f"%arun {line}")).startswith(says)


def test_a_timeout_ends_every_remote_tree(k, marker):
    ex = k.execute(
        f"%%arun --host host0,host1,host2 -t 1 -r rs\nsleep {marker} & sleep {marker}\n", timeout=BOUND
    )
    assert one_line_error(ex, "HostError").startswith("3 of 3 hosts failed: host0: timed out after 1.0 s")
    assert none_left(processes_with, marker)
    assert k.eval("[r.ended for r in rs]") == ["timeout"] * 3


def test_the_stop_button_ends_every_remote_tree(k, marker):
    cell = f"%%arun --host host0,host1,host2\nsleep {marker} & sleep {marker}\n"
    ex = k.execute(cell, timeout=BOUND, interrupt_when=lambda ex: len(sleeping(marker)) == 6)
    assert ": interrupted" in one_line_error(ex, "CommandError")
    assert none_left(processes_with, marker), "a remote process outlived the interrupt"
    assert k.eval("1+1") == 2


def test_a_host_that_cannot_be_reached_is_its_own_failure(k, tmp_path):
    from sshservers import free_port

    port = free_port()
    ex = k.execute(
        f"%%arun --host host0,127.0.0.1:{port},no-such-host.invalid -r rs\necho fine\n", timeout=BOUND
    )
    message = one_line_error(ex, "HostError")
    assert message.startswith(f"2 of 3 hosts failed: 127.0.0.1:{port}: connection refused")
    assert "no-such-host.invalid: unknown host name" in message
    assert labelled_lines(ex.stdout, "host0") == ["fine"]
    assert f"[127.0.0.1:{port}] connection refused" in ex.stderr
    assert k.eval("[r.ok for r in rs]") == [True, False, False]


def test_a_wrong_key_and_an_unknown_host_key_are_named(k, ssh_servers, tmp_path):
    stranger = tmp_path / "stranger"
    keygen(stranger)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    try:
        k.run(f"%config AsyncMagics.client_keys = [{str(stranger)!r}]")
        ex = k.execute("%arun --host host0 true", timeout=BOUND)
        assert one_line_error(ex, "HostError") == (
            "1 of 1 hosts failed: host0: authentication failed: no key or password was accepted"
        )
        k.run("%config AsyncMagics.client_keys = []")
        k.run(f"%config AsyncMagics.known_hosts = {str(empty)!r}")
        ex = k.execute("%arun --host host0 true", timeout=BOUND)
        assert "host0: host key not trusted" in one_line_error(ex, "HostError")
    finally:
        k.run(ssh_servers.config_lines())
        k.run("%config AsyncMagics.client_keys = []")
    assert k.execute("%arun --host host0 true").error is None


def test_the_second_command_to_a_host_opens_no_new_connection(k, ssh_servers):
    port = ssh_servers.servers[1].port

    def connections_to_host1() -> int:
        conns = psutil.Process(k.pid).net_connections(kind="tcp")
        return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")

    k.run("%arun --host host1 -q true")
    assert connections_to_host1() == 1
    for _ in range(3):
        k.run("%arun --host host1 -q true")
    assert connections_to_host1() == 1
    ex = k.execute("%ajobs hosts")
    assert "host1" in tables(ex) and f"127.0.0.1:{port}" in tables(ex)


def test_a_host_that_drops_mid_run_fails_alone_and_its_tree_ends(marker):
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    servers = SSHServers(2)
    kernel = fresh_kernel(servers)
    try:
        cell = f"%%arun --host host0,host1 -r rs\nsleep {marker} & sleep 2; echo done\n"
        ex = kernel.submit(cell)
        assert found(sleeping, marker)
        kernel.wait_until(lambda: len(sleeping(marker)) == 2, timeout=BOUND)
        servers.servers[1].stop()
        kernel.wait_until(lambda: ex.done, timeout=BOUND)
        assert one_line_error(ex, "HostError").startswith("1 of 2 hosts failed: host1: connection lost")
        assert labelled_lines(ex.stdout, "host0") == ["done"]
        assert none_left(processes_with, marker, within=10), "the dropped host's tree outlived its connection"
    finally:
        kernel.shutdown()
        servers.close()


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_the_kernel_going_away_ends_every_remote_tree(ssh_servers, marker, how):
    kernel = fresh_kernel(ssh_servers)
    kernel.submit(f"%%arun --host host0,host1\nsleep {marker} & sleep {marker}\n")
    kernel.wait_until(lambda: len(sleeping(marker)) == 4, timeout=BOUND)
    if how == "sigkill":
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=True)
    else:
        kernel.shutdown()
    assert none_left(processes_with, marker, within=10), f"a remote process outlived the kernel's {how}"


def test_twenty_hosts_at_once(marker):
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    servers = SSHServers(20)
    kernel = fresh_kernel(servers)
    try:
        kernel.run(f"fleet = {servers.aliases!r}")
        ex = kernel.execute(f"%%arun --hosts fleet -r rs\necho {marker} $ASYNCMAGIC_HOST\n", timeout=60)
        assert ex.error is None, ex.streams
        assert "20 hosts, 0 failed" in tables(ex)
        assert kernel.eval("[r.stdout.split()[1] for r in rs]") == servers.aliases
        for host in servers.aliases:
            assert labelled_lines(ex.stdout, host) == [f"{marker} {host}"]
        assert none_left(processes_with, marker)
    finally:
        kernel.shutdown()
        servers.close()


def test_a_background_job_runs_on_every_host_and_awaiting_it_gives_the_list(k):
    ex = k.execute(
        "job = %arun --host host0,host1 --bg sh -c 'sleep 0.5; echo $ASYNCMAGIC_HOST'\n"
        "print(type(job).__name__, job.pid)",
        timeout=BOUND,
    )
    assert ex.error is None and ex.stdout.endswith("HostsJob None\n"), ex.streams
    assert "started · on 2 hosts" in tables(ex)
    listed = tables(k.execute("%ajobs"))
    assert "--host" not in listed and "sh -c" in listed
    ex = k.execute("rs = await job\n[(r.host, r.stdout) for r in rs]", timeout=BOUND)
    assert ex.error is None, ex.streams
    assert ex.result == "[('host0', 'host0\\n'), ('host1', 'host1\\n')]"


def test_a_failing_host_in_a_background_job_raises_host_error_when_awaited(k):
    k.run('job = %arun --host host0,host1 --bg [ "$ASYNCMAGIC_HOST" = host0 ]')
    ex = k.execute("await job", timeout=BOUND)
    assert one_line_error(ex, "HostError") == "1 of 2 hosts failed: host1: exit 1"


@pytest.mark.parametrize("how", ["job.kill()", "%ajobs kill", "%unload_ext"])
def test_stopping_a_background_job_ends_every_remote_tree(k, marker, how):
    ex = k.execute(
        f"job = %arun --host host0,host1,host2 --bg sleep {marker} & sleep {marker}", timeout=BOUND
    )
    assert ex.error is None, ex.streams
    assert k.wait_until(lambda: len(sleeping(marker)) == 6, timeout=BOUND) is None
    if how == "job.kill()":
        k.run("r = await job.kill()\nassert r.ended == 'killed', r")
        assert k.eval("[r.ended for r in job.result.stages]") == ["killed"] * 3
    elif how == "%ajobs kill":
        k.run("%ajobs kill all")
    else:
        k.run("%unload_ext asyncmagic")
    try:
        assert none_left(processes_with, marker, within=10), f"a remote process outlived {how}"
    finally:
        if how == "%unload_ext":
            k.run("%load_ext asyncmagic")
            k.run(k.ssh_config_lines)


def test_tab_completes_the_ssh_config_aliases_after_host(k, ssh_servers):
    from test_completion_kernel import complete

    assert complete(k, "%arun --host ho") == ssh_servers.aliases
    assert complete(k, "%%arun --host host0,host") == ssh_servers.aliases
    assert [c.removeprefix("@") for c in complete(k, "%apipe @ho")] == ssh_servers.aliases
    k.run("fleet = ['host0']")
    assert "fleet" in complete(k, "%arun --hosts fl")


# -- %apipe @host: the first stage remote, the rest local ------------------------------


def test_apipe_runs_its_first_stage_on_a_host_and_streams_into_local_stages(k):
    k.run("h = 'host1'")
    ex = k.execute(
        'r = %apipe @{h} sh -c \'echo "$ASYNCMAGIC_HOST" >&2; printf "b\\na\\nb\\n"\' | sort | uniq -c',
        timeout=BOUND,
    )
    assert ex.error is None, ex.streams
    assert [line.split() for line in ex.stdout.splitlines()] == [["1", "a"], ["2", "b"]]
    assert ex.stderr == "[1 sh@host1] host1\n"
    assert k.eval("[s.host for s in r.stages]") == ["host1", None, None]


def test_apipe_dry_run_shows_the_remote_stage_as_it_runs_there(k):
    ex = k.execute("%apipe --dry-run @host0 grep -c 'a b' /etc/hosts | wc -l")
    assert ex.stdout == "1: @host0 ['grep', '-c', 'a b', '/etc/hosts']\n2: ['wc', '-l']\n"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("@ cat | wc", "%apipe: '@' needs a host name"),
        ("@host0 | wc", "%apipe: @host0: no command"),
        ("cat /etc/hosts | @host0 wc", "%apipe: stage 2: only the first stage can run on a host"),
        ("--host host0 cat /etc/hosts", "%apipe has no --host: its first stage runs on a host written @HOST"),
    ],
)
def test_apipe_bad_remote_stages_are_one_line(k, line, says):
    assert usage_error(k.execute(f"%apipe {line}")).startswith(says)


def test_apipe_with_an_unreachable_host_is_one_line_naming_it(k):
    from sshservers import free_port

    port = free_port()
    message = usage_error(k.execute(f"%apipe @127.0.0.1:{port} cat /etc/hosts | wc -l", timeout=BOUND))
    assert message.startswith(f"%apipe: cannot reach 127.0.0.1:{port}: connection refused")
    assert k.eval("1+1") == 2


def test_apipe_stop_button_ends_the_remote_stage_tree(k, marker):
    line = f"%apipe @host0 sh -c 'sleep {marker} & sleep {marker}' | cat"
    ex = k.execute(line, timeout=BOUND, interrupt_when=lambda ex: len(sleeping(marker)) == 2)
    assert ": interrupted" in one_line_error(ex, "CommandError")
    assert none_left(processes_with, marker), "a remote process outlived the interrupt"


@pytest.mark.parametrize("how", ["await job.kill()", "%ajobs kill all", "%unload_ext asyncmagic"])
def test_apipe_remote_stage_in_a_background_job_ends_when_stopped(k, marker, how):
    k.run(f"job = %apipe --bg @host0 sh -c 'sleep {marker} & sleep {marker}' | cat")
    assert k.wait_until(lambda: len(sleeping(marker)) == 2, timeout=BOUND) is None
    k.run(how)
    try:
        assert none_left(processes_with, marker, within=10), f"a remote process outlived {how}"
    finally:
        if how.startswith("%unload_ext"):
            k.run("%load_ext asyncmagic")
            k.run(k.ssh_config_lines)
    if how == "await job.kill()":
        assert k.eval("job.result.stages[0].host") == "host0"
