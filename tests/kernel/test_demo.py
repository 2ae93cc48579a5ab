"""demo.ipynb runs top to bottom headless (nbclient, a real kernel) and shows what it promises."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

DEMO = Path(__file__).resolve().parents[2] / "demo.ipynb"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each code cell's source mapped to its outputs' text, stderr marked."""
    nb = nbformat.read(DEMO, as_version=4)
    workdir = tmp_path_factory.mktemp("demo")
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    texts = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                parts.append(("ERR:" if out.name == "stderr" else "") + out.text)
            elif out.output_type in ("execute_result", "display_data") and out.data.get("text/plain"):
                parts.append(out.data["text/plain"] + "\n")
            elif out.output_type == "error":
                parts.append("ERROR:" + "\n".join(out.traceback))
        texts[cell.source] = "".join(parts)
    return texts


def output_of(outputs: dict[str, str], start: str) -> str:
    matches = [text for source, text in outputs.items() if source.startswith(start)]
    assert len(matches) == 1, f"no single cell starts with {start!r}"
    return matches[0]


def test_streaming_and_stderr(outputs):
    lines = output_of(outputs, "%%arun --timeout 30").splitlines(keepends=True)
    status = [line for line in lines if line.startswith("exit 0 · ")]  # the elapsed indicator, at its end
    assert len(status) == 1
    assert "".join(line for line in lines if line not in status) == "step 1\nstep 2\nstep 3\nERR:finished\n"


def test_loop_stays_free(outputs):
    text = output_of(outputs, "import asyncio")
    assert (
        text.index("tick 0")
        < text.index("command line 1")
        < text.index("tick 1")
        < text.index("command line 2")
    )


def test_timeout_input_capture_errors(outputs):
    assert "timed out after 1.0 s" in output_of(outputs, "%%arun --timeout 1")
    assert output_of(outputs, '%arun --input "b') == "a\nb\nc\n"
    assert output_of(outputs, "names = ") == "delta\ncharlie\nbravo\nalpha\n"
    assert output_of(outputs, "%%arun\ncat") == "cat read /dev/null and the cell went on\n"
    assert "exit 0" in output_of(outputs, "print(listing.split())")
    error = output_of(outputs, "%arun echo 'about to fail'")
    assert error.startswith("about to fail\nERROR:CommandError:") and "exit 3" in error
    assert "exit 127 (command not found)" in output_of(outputs, "%arun --no-raise this_command")
    assert output_of(outputs, "%arun printf 'caf") == "café and a bad byte: \ufffd\n"
    assert output_of(outputs, "import asyncmagic") == "(2, 'engine\\n', False)\n"


def test_background_jobs(outputs):
    started = output_of(outputs, "%%arun --bg -r train")
    awaited = output_of(outputs, "result = await train")
    lines = [f"epoch {i}" for i in range(1, 5)]
    # Headless: what the starting cell missed is printed where the job is awaited.
    shown = [line for line in (started + awaited).splitlines() if line.startswith("epoch")]
    assert shown == lines
    assert awaited.endswith("(0, 'exit')\n")
    assert "[job 1]" in started
    table = output_of(outputs, 'print("meanwhile')
    assert "meanwhile the kernel is free: 2" in table and "running" in table


def test_interactive_and_kill(outputs):
    repl = output_of(outputs, "repl = %arun")
    assert repl.startswith("[job 2] started · pid ")  # its status line, as a headless run keeps it
    assert "42\n>>> \n[job 2] exit 0 · " in repl
    assert output_of(outputs, "slow = %arun").endswith("'killed'\n")


def test_pipelines(outputs):
    counts = output_of(outputs, "%apipe cat access.log")
    assert [line.split() for line in counts.splitlines()] == [["3", "10.0.0.1"], ["1", "10.0.0.3"]]
    assert output_of(outputs, "def keep_odd") == "1\n3\n5\n"
    assert (
        output_of(outputs, "risky = ")
        == "1: ['printf', '%s\\\\n', 'a b; rm -rf ~']\n2: py:keep_odd\na b; rm -rf ~\n"
    )
    assert output_of(outputs, "r = %apipe -q yes").startswith(
        "(True, ['y', 'y', 'y'], [('yes', -13, 'signal')"
    )
    failed = output_of(outputs, "%apipe --no-raise ls")
    assert failed.startswith("ERR:[1 ls] ls: cannot access") and "exit 2" in failed


def test_output_fit_for_a_notebook(outputs):
    bar = output_of(outputs, "%%arun\nfor i in $(seq 0 5 100)")
    assert bar.rsplit("\r", 1)[-1].split("\n")[0] == "downloading 100% done"  # the last frame arrives
    assert bar.count("downloading") < 21  # not every frame
    split = output_of(outputs, "%%arun --split")
    final = split.split("── stdout ──")[-1]
    assert final.startswith(
        "\ncompiled part 1\ncompiled part 2\ncompiled part 3\n── stderr ──\nwarning: part 1"
    )
    assert output_of(outputs, "%arun --label") == "[out] to stdout\nERR:[err] to stderr\n"
    assert output_of(outputs, "%arun --pty") == "stdout is a terminal: True\n"
    huge = output_of(outputs, "%%arun --max-lines 6")
    notice = "… 199,994 lines (1.3 MB) not shown; full output: /tmp/asyncmagic-"
    # Headless, no line redraws: the notice where the cut is, and again in the last line.
    assert huge.startswith("1\n2\n3\nERR:" + notice)
    body, last = huge.rstrip("\n").rsplit("\n", 1)
    assert body.endswith("199998\n199999\n200000") and last.startswith("exit 0 · ") and notice in last
    assert output_of(outputs, "len(big.stdout") == "(200000, '200000')\n"
    parallel = output_of(outputs, "%%arun --parallel")
    assert "[4 python3 --version] Python 3." in parallel and "] two\n" in parallel
    assert "4 commands, 0 failed" in parallel
    assert output_of(outputs, "[(r.command").count(", 0)") == 4


def test_long_running_work(outputs):
    served = output_of(outputs, "srv = %arun --bg -q --ready")
    assert served.startswith("[job ") and served.endswith("the server answered 200\n")
    tail = output_of(outputs, "%ajobs tail -n 1")
    assert '"GET / HTTP/1.1" 200' in tail and tail.endswith("'killed'\n")
    kept = output_of(outputs, "%arun --keep cd /usr")
    assert kept.startswith("hello from /usr\ndirectory: /usr\n") and "GREETING='hello'" in kept
