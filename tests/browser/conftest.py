"""A real JupyterLab on 127.0.0.1 and a headless Debian Chromium driven by Playwright.

The suite is skipped, with the reason shown, when /usr/bin/chromium (``ASYNCMAGIC_CHROMIUM``
overrides the path) is missing (``make test`` installs it with apt-get when it runs as root)
or Playwright is not installed.
Screenshots of every case go to ``build/browser/`` (``ASYNCMAGIC_ARTIFACTS`` overrides it).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

CHROMIUM = os.environ.get("ASYNCMAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ASYNCMAGIC_ARTIFACTS", ROOT / "build" / "browser"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the browser tests and run them last: the slowest, and the rest need no browser."""
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(item.fspath).parents]
    for item in mine:
        item.add_marker(pytest.mark.browser)
    items[:] = [item for item in items if item not in mine] + mine


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (install Debian's chromium package; make test does it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server in a temporary root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = root.parent / "lab-settings"
        # No "receive Jupyter news?" toast over the cells.
        notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notify.parent.mkdir(parents=True, exist_ok=True)
        notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        private = {name: root.parent / name.lower() for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR")}
        env = {
            **os.environ,
            **{name: str(path) for name, path in private.items()},  # no user config or kernels
            "JUPYTER_RUNTIME_DIR": str(root.parent / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(root.parent / "lab-workspaces"),
        }
        self.log = open(root.parent / "jupyterlab.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.terminals_enabled=False",
                "--LabApp.news_url=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterlab exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)  # polling a port that is not open yet: there is no event to wait on
        raise RuntimeError(f"jupyterlab did not answer in {timeout} s; see {self.log.name}")

    def notebook(self, name: str, *cells: str) -> str:
        """Write a notebook of code cells and return the address that opens it in JupyterLab."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(nb, self.root / name)
        return self.open_url(name)

    def open_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"  # reset: only this notebook open

    def notebook7(self, name: str, *cells: str) -> str:
        """Write a notebook and return the address that opens it in Notebook 7: the same
        server serves it (the ``notebook`` package is a server extension)."""
        self.notebook(name, *cells)
        return f"{self.url}/notebooks/{name}?token={self.token}"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server ends its kernels on SIGTERM
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    root = tmp_path_factory.mktemp("lab") / "root"
    root.mkdir()
    server = Lab(root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Any]:
    """Chromium, per module: Playwright's sync API holds an event loop open in this thread
    until it is closed, and the engine tests run asyncio.run()."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its screenshot is saved as ``build/browser/<test>.png`` whatever the outcome."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
