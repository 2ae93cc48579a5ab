"""A program looked up on PATH is remembered only while the lookup would find the same
(engine/pathlookup.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from asyncmagic import run
from asyncmagic.engine import pathlookup
from asyncmagic.engine.pathlookup import find_program

LONG_AGO = time.time() - 3600


def program(
    folder: Path, name: str = "tool", body: str = "#!/bin/sh\necho {folder}\n", mode: int = 0o755
) -> Path:
    file = folder / name
    file.write_text(body.format(folder=folder.name))
    file.chmod(mode)
    return file


def settled(*folders: Path) -> None:
    """As if the folders had last changed an hour ago (a lookup through them is kept)."""
    for folder in folders:
        os.utime(folder, (LONG_AGO, LONG_AGO))


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path, str]:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    return first, second, f"{first}:{second}:/usr/bin:/bin"


def test_a_lookup_is_kept_and_used_while_its_folders_are_unchanged(two):
    first, second, path = two
    found = program(second)
    settled(first, second)
    assert find_program("tool", path) == (str(found), True)
    assert ("tool", path) in pathlookup._kept
    assert find_program("tool", path) == (str(found), True)


def test_a_program_put_in_an_earlier_folder_is_found_at_once(two):
    first, second, path = two
    program(second)
    settled(first, second)
    find_program("tool", path)
    shadow = program(first)  # the folder's mtime moves: the kept lookup is not used
    assert find_program("tool", path) == (str(shadow), True)
    shadow.unlink()
    assert find_program("tool", path) == (str(second / "tool"), True)


def test_a_file_made_executable_in_an_earlier_folder_is_found_at_once(two):
    first, second, path = two
    program(second)
    waiting = program(first, mode=0o644)
    settled(first, second)
    assert find_program("tool", path)[0] == str(second / "tool")
    waiting.chmod(0o755)  # changes the file, not its folder
    assert find_program("tool", path)[0] == str(waiting)


def test_a_program_changed_in_place_is_looked_at_again(two):
    first, second, path = two
    found = program(second)
    settled(first, second)
    assert find_program("tool", path) == (str(found), True)
    found.write_text("echo no #! line: bash would run it as its own script\n")
    assert find_program("tool", path) == (str(found), False)
    found.unlink()
    assert find_program("tool", path) == (None, False)


def test_a_folder_that_just_changed_is_not_trusted(two):
    """An mtime is as fine as the kernel's clock tick: a change in the same tick would not show."""
    _, second, path = two
    program(second)
    settled(second)  # first changed just now (made by the fixture)
    find_program("tool", path)
    assert ("tool", path) not in pathlookup._kept


def test_the_command_runs_what_the_lookup_finds_now(two):
    """And is told its own path in ``_``, as bash tells it."""
    first, second, path = two
    body = "#!/bin/sh\necho {folder}; printenv _\n"
    program(second, body=body)
    settled(first, second)
    env = {"PATH": path}
    assert asyncio.run(run("tool", env=env)).stdout == f"second\n{second}/tool\n"
    program(first, body=body)
    assert asyncio.run(run("tool", env=env)).stdout == f"first\n{first}/tool\n"
