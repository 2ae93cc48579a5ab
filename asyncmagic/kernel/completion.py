"""Tab completion for the magics: options, ``%ajobs`` actions and job ids, variable names
after ``--stdin``/``--hosts``/``-r``/``-o``/``-e``, the ssh_config's host aliases after
``--host`` and ``@`` in ``%apipe``, and ``py:`` functions in ``%apipe``.

One IPython matcher (API v2, ``IPCompleter.custom_matchers``). On a magic's options it
answers alone (it suppresses the others, so ``%arun --<TAB>`` offers no Python builtins);
on the command itself it answers nothing, and IPython's file and name completion go on.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from typing import Any

from IPython.core.completer import (
    CompletionContext,
    SimpleCompletion,
    SimpleMatcherResult,
    completion_matcher,
)

from ..engine.ssh import config_aliases

_MAGIC = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*=\s*)?%{1,2}(arun|apipe|ajobs)\b(.*)$")

VARIABLE_OPTIONS = {"--stdin", "-r", "--result", "-o", "--out", "-e", "--err", "--hosts"}
"""Options whose value is the name of a variable."""


def matcher_for(magics: Any) -> Callable[[CompletionContext], SimpleMatcherResult]:
    """The matcher of one :class:`~asyncmagic.kernel.magics.AsyncMagics`, for ``custom_matchers``."""

    @completion_matcher(identifier="asyncmagic", api_version=2, priority=10)
    def complete(context: CompletionContext) -> SimpleMatcherResult:
        found = _completions(magics, context.text_until_cursor, context.token)
        if found is None:
            return {"completions": [], "suppress": False}
        return {
            "completions": [SimpleCompletion(text, type="param") for text in found],
            "matched_fragment": context.token,
            "suppress": True,
        }

    return complete


def _completions(magics: Any, line: str, token: str) -> list[str] | None:
    """What completes ``token`` at the end of ``line``; None where this is not ours to say."""
    match = _MAGIC.match(line)
    if match is None:
        return None
    name, rest = match.groups()
    words = rest.split()
    if words and not rest.endswith((" ", "\t")):
        words = words[:-1]  # the token being completed
    before = words[-1] if words else ""
    namespace = magics.shell.user_ns
    if before in VARIABLE_OPTIONS:
        return _starting(token, (n for n in namespace if not n.startswith("_")))
    if before == "--host":
        return _starting(token, config_aliases(magics.ssh_settings().config))
    if name == "ajobs":
        return _ajobs(magics, words, token)
    parser: argparse.ArgumentParser = getattr(magics, name).parser
    if token.startswith("-") and not _command_started(words, parser):
        return _starting(token, parser._option_string_actions)
    at = token.startswith("@") or line[: len(line) - len(token)].endswith("@")
    if name == "apipe" and at and not _command_started(words, parser):
        prefix = "@" if token.startswith("@") else ""  # IPython may split the token at '@'
        return _starting(token, (prefix + a for a in config_aliases(magics.ssh_settings().config)))
    if name == "apipe" and (token.startswith("py:") or line[: len(line) - len(token)].endswith("py:")):
        prefix = "py:" if token.startswith("py:") else ""  # IPython may split the token at ':'
        functions = (n for n, v in namespace.items() if callable(v) and not n.startswith("_"))
        return _starting(token, (prefix + n for n in functions))
    return None


def _ajobs(magics: Any, words: list[str], token: str) -> list[str]:
    parser: argparse.ArgumentParser = magics.ajobs.parser
    if token.startswith("-"):
        return _starting(token, parser._option_string_actions)
    positional, expect_value = [], False
    for word in words:
        if expect_value:
            expect_value = False
        elif word.startswith("-"):
            action = parser._option_string_actions.get(word)
            expect_value = action is not None and action.nargs != 0
        else:
            positional.append(word)
    if expect_value:
        return []  # an option's value (-n N)
    if not positional:
        actions = next(a.choices for a in parser._actions if a.dest == "action")
        return _starting(token, actions)
    if positional[0] not in ("list", "clear", "hosts") and len(positional) == 1:
        ids = [str(job.id) for job in magics.background.jobs]
        return _starting(token, [*ids, "all"] if positional[0] in ("kill", "wait") else ids)
    return []


def _command_started(words: list[str], parser: argparse.ArgumentParser) -> bool:
    """True once a word that is not an option (or an option's value) came: the command."""
    expect_value = False
    for word in words:
        if expect_value:
            expect_value = False
            continue
        if word == "--" or not word.startswith("-"):
            return True
        action = parser._option_string_actions.get(word)
        expect_value = action is not None and action.nargs != 0
    return False


def _starting(token: str, candidates: Iterable[str]) -> list[str]:
    return sorted({c for c in candidates if c.startswith(token)})
