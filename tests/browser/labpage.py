"""Using a notebook in JupyterLab as a person does: open it, select a cell, Shift+Enter, read."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Locator, Page, expect

STDOUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]'
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


class Notebook:
    """An open notebook page."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        page.goto(url)
        expect(self.cells.first).to_be_visible()
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)
        # Collapse the file browser, as one does for more room.
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
        expect(page.locator("#jp-left-stack")).to_be_hidden()

    @property
    def cells(self) -> Locator:
        return self.page.locator(".jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def run(self, index: int) -> Locator:
        """Select cell ``index`` (command mode) and press Shift+Enter; returns the cell."""
        cell = self.cell(index)
        cell.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Shift+Enter")
        return cell

    def wait_done(self, index: int, timeout: float = 60_000) -> Locator:
        """Wait until the cell's prompt shows an execution count (``[3]:``), not ``[*]:``."""
        cell = self.cell(index)
        expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout)
        return cell

    def run_and_wait(self, index: int, timeout: float = 60_000) -> Locator:
        self.run(index)
        return self.wait_done(index, timeout)

    def menu(self, *path: str) -> None:
        """Click through the menu bar, e.g. ``menu("Kernel", "Interrupt Kernel")``."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=path[0]).click()
        for item in path[1:]:
            self.page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


class ClassicNotebook(Notebook):
    """A notebook open in Notebook 7 (package ``notebook``): the same cells and outputs as
    JupyterLab (it is built from its components), one document per page, no side bar."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        page.goto(url)
        expect(self.cells.first).to_be_visible(timeout=60_000)
        # Ready once the kernel is named and no longer "Connecting" (the status is empty
        # when idle, and also before a kernel is chosen: the name comes first). A cell run
        # before that was lost under load: its prompt stayed [ ]:.
        expect(page.locator(".jp-Toolbar-kernelName")).to_have_text(re.compile("Python 3"), timeout=60_000)
        expect(page.locator(".jp-NotebookKernelStatus")).to_have_text("", timeout=60_000)


def text(locator: Locator) -> str:
    """The rendered text of every element the locator matches, joined."""
    return "".join(locator.all_inner_texts())


def running(cell: Locator) -> Any:
    return expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
