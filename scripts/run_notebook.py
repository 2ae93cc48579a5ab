"""Execute a notebook top to bottom in a real kernel and print each cell's output as it streams.

Usage: python scripts/run_notebook.py demo.ipynb

Output is printed as the iopub messages arrive (stderr marked), like a frontend would show
it. Exits non-zero if a cell fails that is not tagged ``raises-exception``.
"""

from __future__ import annotations

import queue
import sys
import tempfile
import time

import nbformat
from jupyter_client.manager import start_new_kernel


def show(msg: dict) -> None:
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        out = sys.stderr if content["name"] == "stderr" else sys.stdout
        out.write(content["text"])
        out.flush()
    elif kind in ("execute_result", "display_data", "update_display_data"):
        text = content.get("data", {}).get("text/plain")
        if text:
            print(text, flush=True)
    elif kind == "error":
        print("\n".join(content["traceback"]), file=sys.stderr, flush=True)


def main(path: str) -> int:
    nb = nbformat.read(path, as_version=4)
    workdir = tempfile.mkdtemp(prefix="asyncmagic-demo-")  # files the notebook writes land here
    manager, client = start_new_kernel(kernel_name="python3", cwd=workdir)
    failed = 0
    try:
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        for number, cell in enumerate(code_cells, 1):
            print(f"\n\033[1m[{number}]\033[0m {cell.source}", flush=True)
            msg_id = client.execute(cell.source)
            expect_error = "raises-exception" in cell.metadata.get("tags", [])
            errored = False
            deadline = time.monotonic() + 600
            while True:
                try:
                    msg = client.get_iopub_msg(timeout=1)
                except queue.Empty:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"cell {number} did not finish") from None
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                show(msg)
                errored |= msg["msg_type"] == "error"
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            if errored and not expect_error:
                failed += 1
                print(f"cell {number} failed", file=sys.stderr)
    finally:
        client.stop_channels()
        manager.shutdown_kernel()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo.ipynb"))
