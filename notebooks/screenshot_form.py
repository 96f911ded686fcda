"""Save a screenshot of the form, as Voilà serves it, into ``02_form.ipynb``'s saved output.

A notebook saved without widget state shows a widget as its text repr only, so readers on
GitHub or in the docs would never see the form. This script serves the notebook with Voilà,
opens it in Debian's Chromium 1280 px wide, presses Preview, and stores a PNG of the form as
the ``image/png`` of the form cell's output (nbval does not compare images), with the text repr
in its sanitised form (no temporary path). Run it after changing the form:

    python notebooks/screenshot_form.py            # needs the [notebook,browser] extras
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "02_form.ipynb"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 1200}  # tall enough for the whole form and its plan


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api")
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"voila did not start on port {port}")


def screenshot(png: Path) -> None:
    """Serve the form notebook and save a PNG of the form after Preview to ``png``."""
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="zipkit-form-"))
    port = _port()
    env = {**os.environ, "ZIPKIT_FORM_ROOT": str(root), "JUPYTER_PLATFORM_DIRS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "voila", "--no-browser", f"--port={port}",
                             "--Voila.ip=127.0.0.1", str(NOTEBOOK)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _up(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            page.wait_for_selector(".zipkit-form .zipkit-zip", timeout=120_000)
            page.locator(".zipkit-preview").click()
            page.locator(".zipkit-result .zipkit-plan-table").wait_for()
            page.mouse.move(0, 0)
            time.sleep(0.5)
            page.locator(".zipkit-form").screenshot(path=str(png))
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def store(png: Path) -> None:
    """Put ``png`` into the form cell's saved output (the cell that displays ``form``)."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).rstrip()
                .endswith("\nform"))
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    for out in cell["outputs"]:
        if out.get("output_type") == "execute_result":
            out["data"]["image/png"] = data
            out["data"]["text/plain"] = ["ZipForm(root='TMP/zipkit-form')"]
            out.setdefault("metadata", {})["image/png"] = {"width": 900}
    NOTEBOOK.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "form.png"
        screenshot(shot)
        store(shot)
        print(f"stored a {shot.stat().st_size // 1024} KiB screenshot in {NOTEBOOK.name}")
