"""``%apipe`` syntax: shell-like quoting with nothing expanded, safe ``{name}`` insertion,
one clear message for each mistake, found before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncmagic.kernel.pipesyntax import PipeSyntaxError, check_commands, parse


def keep_odd(lines):
    for line in lines:
        if int(line) % 2:
            yield line


def argvs(line: str, **ns) -> list[list[str]]:
    return [list(s.argv) for s in parse(line, ns).stages]


def test_quoting_follows_the_shell_and_expands_nothing():
    assert argvs("""grep -v 'a b' | cut -d' ' -f1 | echo "x \\"y\\"" $HOME *.py a\\ b""") == [
        ["grep", "-v", "a b"],
        ["cut", "-d ", "-f1"],
        ["echo", 'x "y"', "$HOME", "*.py", "a b"],
    ]
    assert argvs("grep '|' file") == [["grep", "|", "file"]]


@pytest.mark.parametrize("value", ["a b; rm -rf ~", "$(touch /tmp/pwned)", "`id`", "x | cat", "'q'\"", "*"])
def test_inserted_values_stay_one_literal_argument(value):
    assert argvs("printf '%s\\n' {v}", v=value) == [["printf", "%s\\n", value]]
    assert argvs("echo pre-{v}-post", v=value) == [["echo", f"pre-{value}-post"]]


def test_list_insertion_braces_and_attributes():
    assert argvs("ls {paths*}", paths=["a b", Path("/tmp")]) == [["ls", "a b", "/tmp"]]
    assert argvs("echo {{x}} '{v}' {p.name}", v=1, p=Path("/a/b.txt")) == [["echo", "{x}", "{v}", "b.txt"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a | | b", "empty stage 2"),
        ("a |", "trailing '|'"),
        ("| a", "empty stage 1"),
        ("echo 'open", "unbalanced single quote"),
        ('echo "open', "unbalanced double quote"),
        ("echo {missing}", "no variable named 'missing'"),
        ("echo {v*}", "needs a list"),
        ("echo x{l*}", "must be a whole word"),
        ("echo }", "lone '}'"),
        ("py:nope", "no variable named 'nope'"),
        ("py:v", "not callable"),
        ("cat | sort < f", "first stage only"),
        ("cat > f | sort", "last stage only"),
        ("cat <", "needs a file name"),
        ("cat < /no/such/file", "no such file"),
        ("", "empty pipeline"),
    ],
)
def test_bad_lines_are_refused_with_a_clear_message(line, message):
    with pytest.raises(PipeSyntaxError, match=message.replace("|", "\\|").replace("*", "\\*")):
        parse(line, {"v": 5, "l": [1]})


def test_unknown_command_is_found_before_anything_starts():
    with pytest.raises(PipeSyntaxError, match="stage 2: no_such_cmd_x: command not found"):
        check_commands(parse("echo | no_such_cmd_x", {}))


def test_dry_run_lines():
    spec = parse("printf '%s\\n' {x} | py:f > out.txt", {"x": "a b; rm -rf ~", "f": keep_odd})
    assert spec.dry_run() == "1: ['printf', '%s\\\\n', 'a b; rm -rf ~']\n2: py:f\nstdout: 'out.txt'"
