"""demo.ipynb run in JupyterLab with Run > Run All Cells, as a person would; its screenshots.

build/browser/demo-top.png and demo-output.png are what the README shows (docs/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ARTIFACTS
from labpage import STDOUT, Notebook, text
from playwright.sync_api import expect

DEMO = Path(__file__).resolve().parents[2] / "demo.ipynb"


def test_the_demo_runs_top_to_bottom_in_jupyterlab(lab, page):
    shutil.copy(DEMO, lab.root / "demo.ipynb")
    nb = Notebook(page, lab.open_url("demo.ipynb"))
    cells = json.loads(DEMO.read_text())["cells"]
    assert cells[-1]["cell_type"] == "code"
    # The page adds cells as it renders them: counted too early, the "last" cell was a
    # markdown cell whose prompt stays empty (one run in ten).
    expect(nb.cells).to_have_count(len(cells))
    code_cells = page.locator(".jp-Notebook .jp-CodeCell")
    expect(code_cells).to_have_count(sum(c["cell_type"] == "code" for c in cells))
    nb.menu("Run", "Run All Cells")
    nb.wait_done(len(cells) - 1, timeout=180_000)
    prompts = [code_cells.nth(i).locator(".jp-InputPrompt").text_content() for i in range(code_cells.count())]
    assert all(p.strip("[]: ").isdigit() for p in prompts), prompts  # every cell ran
    errors = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        has_text="CommandError: echo",
    )
    expect(errors).to_have_count(1)  # the one cell tagged raises-exception
    page.locator(".jp-Notebook").press("Control+Home")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    nb.cell(1).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "demo-top.png"))
    heading = page.locator(".jp-MarkdownCell h2", has_text="Output fit for a notebook")
    heading.evaluate("h => h.scrollIntoView({block: 'start'})")
    expect(page.locator(".asyncmagic-split").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "demo-output.png"))
    assert "stdout is a terminal: True" in text(page.locator(STDOUT))
