"""The remote engine alone (plain asyncio, no IPython) against real sshd servers on 127.0.0.1.

The hosts are this machine, so what runs "remotely" is found in /proc like anything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal

import pytest
from kernelclient import found, none_left, processes_with, sleeping
from sshservers import SSHServers, free_port

from asyncmagic import run, start
from asyncmagic.engine.pipeline import Command, RemoteCommand, run_pipeline, start_pipeline
from asyncmagic.engine.remote import SCRIPT_MAX, run_remote, start_remote
from asyncmagic.engine.ssh import ConnectError, Connections, SSHSettings, split_host


@pytest.fixture
def remote(ssh_servers):
    """``run``/``start`` options that reach ``host0``..``host2`` through a pool of this test's own."""
    settings = SSHSettings(config=str(ssh_servers.ssh_config), known_hosts=str(ssh_servers.known_hosts))
    return {"ssh": settings, "connections": Connections()}


def arun(coro):
    return asyncio.run(coro)


async def _run(command, host, remote, **options):
    return await run_remote(command, host, **remote, **options)


def test_stdout_stderr_and_exit_status_come_back_apart(remote):
    r = arun(_run("echo out; echo err >&2; exit 3", "host0", remote))
    assert (r.stdout, r.stderr, r.returncode, r.ended, r.host) == ("out\n", "err\n", 3, "exit", "host0")
    assert not r.ok and r.describe() == "exit 3"


def test_a_signal_death_reads_as_locally(remote):
    r = arun(_run("kill -TERM $$", "host0", remote))
    assert (r.returncode, r.ended) == (-signal.SIGTERM, "signal")


def test_a_missing_command_is_exit_127(remote):
    r = arun(_run("no-such-command-here", "host1", remote))
    assert r.returncode == 127 and "not found" in r.stderr


def test_the_engine_front_door_takes_host(remote, ssh_servers):
    async def main():
        proc = await start("echo $0", host="host2", ssh=remote["ssh"])
        return await proc.wait()

    r = arun(main())
    assert r.ok and r.host == "host2" and r.stdout == "bash\n"
    r = arun(run("echo via-run", host="host2", ssh=remote["ssh"]))
    assert r.stdout == "via-run\n"


def test_input_env_and_cwd_reach_the_host(remote, tmp_path):
    r = arun(
        _run(
            'cat; echo "[$FOO]"; pwd; echo "${GONE-unset}"',
            "host0",
            remote,
            input="line 1\nline 2\n",
            env={"FOO": "it's $HOME", "GONE": None},
            cwd=str(tmp_path),
        )
    )
    assert r.stdout == f"line 1\nline 2\n[it's $HOME]\n{tmp_path}\nunset\n"


def test_stdin_is_at_end_of_file_without_input(remote):
    r = arun(_run("cat; echo done", "host0", remote))
    assert r.stdout == "done\n"


def test_a_pty_is_a_terminal_and_merges_the_streams(remote):
    r = arun(_run("test -t 1 && echo tty; echo err >&2", "host1", remote, pty=True))
    assert r.stdout == "tty\nerr\n" and r.stderr == ""


def test_what_the_command_left_running_ends_with_it(remote, marker):
    r = arun(_run(f"sleep {marker} & echo started", "host0", remote, grace=1))
    assert r.ok and r.stdout == "started\n"
    assert none_left(processes_with, marker)


def test_a_leftover_that_ignores_sigterm_is_killed_after_the_grace(remote, marker):
    r = arun(_run(f"trap '' TERM; sleep {marker} & echo started", "host0", remote, grace=0.5))
    assert r.ok
    assert none_left(processes_with, marker)


def test_a_timeout_ends_the_whole_remote_tree(remote, marker):
    r = arun(_run(f"sleep {marker} & sleep {marker}", "host1", remote, timeout=1))
    assert r.ended == "timeout" and r.describe() == "timed out after 1.0 s"
    assert r.stderr == ""  # no "Terminated" from the wrapper
    assert none_left(processes_with, marker)


def test_a_cancelled_run_interrupts_the_remote_tree_with_sigint_first(remote, marker, tmp_path):
    flag = tmp_path / "got-int"

    async def main():
        task = asyncio.ensure_future(
            _run(f"trap 'touch {flag}; exit 130' INT; sleep {marker} & wait", "host2", remote)
        )
        assert await asyncio.to_thread(found, sleeping, marker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert flag.exists()
    assert none_left(processes_with, marker)


def test_a_tree_that_ignores_sigterm_is_killed(remote, marker):
    async def main():
        proc = await start(f"trap '' TERM INT; sleep {marker}", host="host0", ssh=remote["ssh"], grace=0.5)
        assert await asyncio.to_thread(found, sleeping, marker)
        return await proc.stop()

    r = arun(main())
    assert (r.ended, r.returncode) == ("killed", -signal.SIGKILL)
    assert none_left(processes_with, marker)


def test_a_lost_connection_ends_the_remote_tree_within_seconds(remote, marker):
    """Without a pty, a closed channel sends no signal: the wrapper's watcher ends the group."""

    async def main():
        proc = await start_remote(f"sleep {marker} & sleep {marker}", "host1", **remote)
        assert await asyncio.to_thread(found, sleeping, marker)
        remote["connections"].close_now()
        return await proc.wait()

    r = arun(main())
    assert not r.ok and r.returncode == 255 and r.error.startswith("connection lost")
    assert none_left(processes_with, marker, within=10)


def test_connections_are_reused(remote):
    async def main():
        pool = remote["connections"]
        for _ in range(3):
            assert (await _run("true", "host0", remote)).ok
        assert pool.opened == 1
        assert [row["host"] for row in pool.table()] == ["host0"]
        await asyncio.gather(*(_run("true", "host1", remote) for _ in range(4)))
        assert pool.opened == 2  # concurrent first calls share one handshake
        await pool.aclose()
        assert pool.table() == []
        assert (await _run("true", "host0", remote)).ok  # opened again
        assert pool.opened == 3

    arun(main())


@pytest.mark.parametrize(
    ("host", "settings", "cause"),
    [
        ("127.0.0.1:{free}", {}, "connection refused"),
        ("no-such-host.invalid", {}, "unknown host name"),
        ("host0", {"known_hosts": "{empty}"}, "host key not trusted"),
        ("host0", {"client_keys": ("{stranger}",)}, "authentication failed"),
    ],
    ids=["refused", "dns", "unknown-host-key", "wrong-key"],
)
def test_a_host_that_cannot_be_reached_is_one_line_naming_it(
    remote, ssh_servers, tmp_path, host, settings, cause
):
    from sshservers import free_port, keygen

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = tmp_path / "stranger"
    keygen(stranger)
    names = {"free": free_port(), "empty": empty, "stranger": stranger}
    host = host.format(**names)
    fields = {
        k: (tuple(x.format(**names) for x in v) if isinstance(v, tuple) else v.format(**names))
        for k, v in settings.items()
    }
    ssh = SSHSettings(
        config=str(ssh_servers.ssh_config),
        known_hosts=fields.get("known_hosts", str(ssh_servers.known_hosts)),
        client_keys=fields.get("client_keys", ()),
    )
    with pytest.raises(ConnectError) as caught:
        arun(_run("true", host, {"ssh": ssh, "connections": Connections()}))
    assert str(caught.value).startswith(f"{host}: {cause}")
    assert "\n" not in str(caught.value)


def test_a_host_that_never_answers_fails_within_the_connect_timeout(remote, ssh_servers):
    import socket
    import time

    with socket.socket() as silent:  # accepts (the backlog) but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        ssh = SSHSettings(known_hosts=str(ssh_servers.known_hosts), connect_timeout=1)
        began = time.monotonic()
        with pytest.raises(ConnectError, match="no answer within 1 s"):
            arun(_run("true", f"127.0.0.1:{port}", {"ssh": ssh, "connections": Connections()}))
        assert time.monotonic() - began < 5


def test_bad_requests_are_refused_before_anything_starts(remote):
    with pytest.raises(ValueError, match="limited to"):
        arun(_run("x" * (SCRIPT_MAX + 1), "host0", remote))
    with pytest.raises(ValueError, match="not a port"):
        split_host("web1:http")
    with pytest.raises(ValueError, match="timeout must be positive"):
        arun(_run("true", "host0", remote, timeout=0))
    assert split_host("deploy@[::1]:2222") == ("::1", 2222, "deploy")
    assert split_host("web1") == ("web1", None, None)


def test_no_process_is_left_after_a_run_on_each_host(remote, ssh_servers, marker):
    async def main():
        return await asyncio.gather(*(_run(f"echo {marker}", h, remote) for h in ssh_servers.aliases))

    results = arun(main())
    assert [r.stdout for r in results] == [f"{marker}\n"] * 3
    assert none_left(processes_with, marker)
    assert os.getpid() > 0


# -- a pipeline's first stage on a host ------------------------------------------------


def R(host: str, *argv: str) -> RemoteCommand:
    return RemoteCommand(host, tuple(argv))


def test_a_remote_first_stage_streams_into_local_stages(remote):
    stages = [R("host0", "printf", "b\\na\\nb\\n"), Command(("sort",)), Command(("uniq", "-c"))]
    r = arun(run_pipeline(stages, ssh=remote["ssh"]))
    assert r.ok, r
    assert [line.split() for line in r.lines] == [["1", "a"], ["2", "b"]]
    assert r.stages[0].host == "host0" and r.stages[0].command == "@host0 printf b\\na\\nb\\n"
    assert r.stages[1].host is None


def test_a_remote_stage_moves_bytes_unchanged_with_back_pressure(remote, tmp_path):
    data = os.urandom(3_000_000)  # not UTF-8, and far more than a pipe holds
    (tmp_path / "blob").write_bytes(data)
    stages = [R("host0", "cat", str(tmp_path / "blob")), Command(("sha256sum",))]
    r = arun(run_pipeline(stages, ssh=remote["ssh"]))
    assert r.ok and r.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_a_remote_stage_gets_the_input_and_shows_its_stderr_labelled(remote):
    stages = [R("host0", "sh", "-c", "echo warn >&2; cat"), Command(("sort", "-r"))]
    r = arun(run_pipeline(stages, input="x\ny\n", ssh=remote["ssh"]))
    assert r.ok and r.lines == ["y", "x"]
    assert r.stderr == "[1 sh@host0] warn\n"


def test_a_reader_that_stops_early_ends_the_remote_writer_by_sigpipe(remote, marker):
    stages = [R("host0", "sh", "-c", f"sleep {marker} & yes"), Command(("head", "-n", "2"))]
    r = arun(run_pipeline(stages, ssh=remote["ssh"], timeout=30))
    assert r.ok and r.lines == ["y", "y"], r
    assert r.stages[0].returncode == -signal.SIGPIPE
    assert none_left(sleeping, marker)


def test_a_timeout_ends_the_remote_stage_and_its_tree(remote, marker):
    stages = [R("host0", "sh", "-c", f"sleep {marker} & sleep {marker}"), Command(("cat",))]
    r = arun(run_pipeline(stages, ssh=remote["ssh"], timeout=1))
    assert r.ended == "timeout"
    assert none_left(sleeping, marker)


def test_a_local_stage_that_cannot_start_ends_the_remote_one(remote, marker):
    stages = [R("host0", "sleep", marker), Command(("/no/such/program",))]

    async def main():
        with pytest.raises(FileNotFoundError):
            await start_pipeline(stages, ssh=remote["ssh"])

    arun(main())
    assert none_left(sleeping, marker)


def test_a_remote_stage_whose_host_cannot_be_reached_starts_nothing(remote):
    stages = [R(f"127.0.0.1:{free_port()}", "cat"), Command(("sort",))]

    async def main():
        with pytest.raises(ConnectError, match="connection refused"):
            await start_pipeline(stages, ssh=remote["ssh"])

    arun(main())


def test_only_the_first_stage_can_be_remote():
    with pytest.raises(ValueError, match="only the first stage"):
        arun(start_pipeline([Command(("true",)), R("host0", "cat")]))


def test_more_sessions_than_a_connection_holds_open_another_connection(remote, marker):
    """OpenSSH lets a connection hold 10 sessions (MaxSessions): the eleventh and twelfth
    command to one host go over a second connection, and all of them end."""

    async def main():
        pool = remote["connections"]
        procs = await asyncio.gather(*(start_remote(f"sleep {marker}", "host0", **remote) for _ in range(12)))
        assert found(lambda m: sleeping(m) if len(sleeping(m)) == 12 else [], marker)
        assert pool.opened == 2
        assert sorted(row["sessions"] for row in pool.table()) == [2, 10]
        results = await asyncio.gather(*(p.stop("killed", grace=0.5) for p in procs))
        await pool.aclose()
        return results

    results = arun(main())
    assert [r.ended for r in results] == ["killed"] * 12
    assert none_left(sleeping, marker)


def test_a_server_that_allows_fewer_sessions_gets_another_connection(marker):
    """A server whose MaxSessions is 3 refuses the fourth session on a connection: that
    connection is full, and the fourth and fifth commands go over a second one."""
    servers = SSHServers(1, max_sessions=3)
    settings = SSHSettings(config=str(servers.ssh_config), known_hosts=str(servers.known_hosts))
    pool = Connections()

    async def main():
        procs = [
            await start_remote(f"sleep {marker}", "host0", ssh=settings, connections=pool) for _ in range(5)
        ]
        assert found(lambda m: sleeping(m) if len(sleeping(m)) == 5 else [], marker)
        assert pool.opened == 2 and sorted(row["sessions"] for row in pool.table()) == [2, 3]
        await asyncio.gather(*(p.stop("killed", grace=0.5) for p in procs))
        await pool.aclose()

    try:
        arun(main())
    finally:
        servers.close()
    assert none_left(sleeping, marker)
