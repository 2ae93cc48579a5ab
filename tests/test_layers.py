"""The shape: engine <- display <- kernel, imports pointing one way, and no cycle anywhere."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import asyncmagic
import asyncmagic.engine

ROOT = Path(asyncmagic.__file__).parent
FOREIGN_TO_ENGINE = ("IPython", "ipykernel", "traitlets", "asyncmagic.display", "asyncmagic.kernel")


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {"asyncmagic": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="asyncmagic."):
        path = ROOT.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def _imports(name: str, path: Path) -> set[str]:
    """What a module imports anywhere in it (also inside functions), as absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module if node.level == 0 else ".".join(p for p in (base, node.module) if p)
            assert module is not None
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()


def test_the_walk_finds_every_layer() -> None:
    packages = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    assert {"engine", "display", "kernel"} <= packages
    assert len([n for n in MODULES if n.startswith("asyncmagic.engine.")]) >= 10


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("asyncmagic.engine")))
def test_the_engine_imports_no_ipython_and_no_upper_layer(name: str) -> None:
    bad = {m for m in _imports(name, MODULES[name]) if m.startswith(FOREIGN_TO_ENGINE)}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("asyncmagic.display")))
def test_display_imports_nothing_from_the_kernel_layer(name: str) -> None:
    bad = {m for m in _imports(name, MODULES[name]) if m.startswith("asyncmagic.kernel")}
    assert not bad, f"{name} imports {sorted(bad)}"


def test_importing_every_engine_module_loads_no_ipython() -> None:
    """The same at run time, in a fresh interpreter: what the imports and a run pull in."""
    engine = [info.name for info in pkgutil.walk_packages(asyncmagic.engine.__path__, "asyncmagic.engine.")]
    code = (
        "import importlib, sys\n"
        f"for name in {engine!r}: importlib.import_module(name)\n"
        "import asyncio, asyncmagic\n"
        "assert asyncio.run(asyncmagic.run('echo hi')).stdout == 'hi\\n'\n"
        f"print(sorted(m for m in sys.modules if m.startswith({FOREIGN_TO_ENGINE!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_the_extension_leaves_ssh_unimported_until_a_host_is_named() -> None:
    """asyncssh (and its cryptography) takes about a quarter second to import: a kernel that
    never names a host never pays it; the first remote command does."""
    code = (
        "import asyncio, sys\n"
        "import asyncmagic, asyncmagic.kernel.extension\n"
        "from asyncmagic import run\n"
        "assert asyncio.run(run('echo hi')).stdout == 'hi\\n'\n"
        "print('asyncssh' in sys.modules)\n"
        "from asyncmagic.engine.process import start\n"
        "async def remote():\n"
        "    try:\n"
        "        await start('true', host='127.0.0.1:1')\n"
        "    except OSError:\n"
        "        pass\n"
        "asyncio.run(remote())\n"
        "print('asyncssh' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_no_import_cycle() -> None:
    graph = {
        name: {m for m in _imports(name, path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }
    # The package's __init__ re-exports the engine and loads the extension lazily: not an edge.
    graph["asyncmagic"] = {m for m in graph["asyncmagic"] if m.startswith("asyncmagic.engine")}
    for name in graph:  # a package's own __init__ is reached from each module in it
        graph[name].discard(name.rpartition(".")[0])
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_package_is_in_the_distribution():
    """A ``pip install .`` (not editable) ships only the packages pyproject.toml lists."""
    import tomllib

    listed = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert sorted(listed) == sorted(packages)
