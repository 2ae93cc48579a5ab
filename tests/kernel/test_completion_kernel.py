"""Tab completion of the magics, asked as a frontend asks: ``complete_request`` to a real kernel."""

from __future__ import annotations

import pytest
from kernelclient import Kernel

pytestmark = pytest.mark.kernel


def complete(kernel: Kernel, code: str) -> list[str]:
    msg_id = kernel.client.complete(code, len(code))
    while True:
        reply = kernel.client.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["matches"]


@pytest.fixture(scope="module")
def k(kernel: Kernel) -> Kernel:
    kernel.run("completion_nums = [1, 2]\ndef completion_upper(lines):\n    return lines")
    kernel.run("_cj = %arun --bg -q true\nawait _cj")
    return kernel


@pytest.mark.parametrize(
    "code, expected",
    [
        ("%arun --ti", ["--timeout"]),
        ("%%arun --sp", ["--split"]),
        ("x = %arun --qu", ["--quiet"]),
        ("%arun --interrupt", ["--interrupt-grace"]),
        ("%apipe --dr", ["--dry-run"]),
        ("%ajobs k", ["kill"]),
        ("%ajobs --re", ["--replay"]),
        ("%arun --rea", ["--ready", "--ready-timeout"]),
        ("%arun --as", ["--ask"]),
        ("%arun --ke", ["--keep"]),
    ],
)
def test_options_and_actions_complete(k: Kernel, code: str, expected: list[str]):
    assert complete(k, code) == expected


def test_only_options_after_dashes(k: Kernel):
    """It offered Python builtins; %apipe offers none of the command-only options."""
    arun = complete(k, "%arun --")
    assert "--timeout" in arun and "--pty" in arun and all(m.startswith("--") for m in arun)
    apipe = complete(k, "%apipe --")
    assert "--timeout" in apipe and "--pty" not in apipe and "--parallel" not in apipe


def test_job_ids_and_variables_and_python_stages(k: Kernel):
    job_id = str(k.eval("_cj.id"))
    assert set(complete(k, "%ajobs ")) == {"list", "kill", "wait", "clear", "show", "tail", "attach", "hosts"}
    assert job_id in complete(k, "%ajobs kill ") and "all" in complete(k, "%ajobs wait ")
    ids = {
        str(i)
        for i in k.eval("[j.id for j in get_ipython().find_line_magic('arun').__self__.background.jobs]")
    }
    # show/tail/attach take one job: its ids, never "all"; -n's value is skipped
    assert (
        set(complete(k, "%ajobs attach ")) == ids == set(complete(k, "%ajobs tail -n 5 ")) and job_id in ids
    )
    assert complete(k, "%arun --stdin completion_n") == ["completion_nums"]
    assert complete(k, "%apipe echo hi | py:completion_u") == ["completion_upper"]  # after "py:"


def test_the_command_itself_is_left_to_ipython(k: Kernel):
    """After the command's first word the options are its own: nothing of ours is offered."""
    assert complete(k, "%arun ls --ti") == []
    assert "print" in complete(k, "pri")  # other completion still works with ours loaded
