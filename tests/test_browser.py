"""The form as a user meets it: notebooks/02_form.ipynb served by Voilà, driven in Chromium.

Needs Debian's Chromium (``apt-get install -y chromium``), the Playwright Python package and
Voilà; no browser is downloaded. The form notebook roots itself in ``$ZIPKIT_FORM_ROOT``
(read when the notebook runs), where it writes its demo data set under ``demo/``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[1]
FORM = REPO / "notebooks" / "02_form.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
BIG_STEMS, BIG_MB = 6, 24  # bzip2 -9 reads ~8 MB/s per core: tens of seconds of work for 2 cores
KERNEL_READY_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc: subprocess.Popen, port: int, timeout: float = 60) -> bool:
    """True once the server answers on ``port``; False if it exited or stayed silent."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # /api answers without starting a kernel
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api")
            if conn.getresponse().status < 500:
                return True
        time.sleep(0.3)
    return False


def _text_like(n: int) -> bytes:
    """``n`` bytes of digits, commas and newlines: fast to make, slow for bzip2 to squeeze."""
    table = bytes(b"0123456789,.-\n"[i % 14] for i in range(256))
    return os.urandom(n).translate(table)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Voilà serving the form notebook rooted in a fresh folder: ``(url, root, voila's pid)``."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)")
    root = tmp_path_factory.mktemp("form-root").resolve()
    big = root / "big"
    big.mkdir()
    for i in range(BIG_STEMS):
        (big / f"sim{i:02d}.dat").write_bytes(_text_like(BIG_MB << 20))
    env = {**os.environ, "ZIPKIT_FORM_ROOT": str(root), "JUPYTER_PLATFORM_DIRS": "1"}
    log_path = root.parent / "voila.log"
    for _attempt in range(3):  # another process may take the free port before voila does
        port = _free_port()
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
             "--Voila.port_retries=0", str(FORM)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        up = _wait_for_server(proc, port)
        if up or proc.poll() is None or "already in use" not in log_path.read_text(errors="replace"):
            break
        log.close()
    url = f"http://127.0.0.1:{port}/"
    try:
        if not up:
            pytest.fail(f"voila did not serve (exit code {proc.poll()}):\n"
                        + log_path.read_text(errors="replace"))
        yield url, root, proc.pid
    finally:
        kids = []
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)  # voila asks its kernels to shut down
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for k in kids:  # kernels run in sessions of their own; end any that outlived voila
            with contextlib.suppress(psutil.Error):
                k.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(served, browser):
    """A fresh page (so a fresh kernel) on the served form, once the form is drawn."""
    url = served[0]
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(url, timeout=KERNEL_READY_S * 1000)
    pg.wait_for_selector(".zipkit-form .zipkit-zip", timeout=KERNEL_READY_S * 1000)
    try:
        yield pg
    finally:
        ctx.close()


def fill(page, css: str, value: str) -> None:
    """Type a path into a text field and press Enter (the form reacts on Enter or blur)."""
    box = page.locator(f"{css} input")
    box.fill(value)
    box.press("Enter")


def pick(page, css: str, *exts: str) -> None:
    """Select exactly the options of a multi-select whose label starts with one of ``exts``."""
    values = []
    for ext in exts:
        opt = page.locator(f"{css} option", has_text=re.compile(rf"^{re.escape(ext)}\s"))
        opt.first.wait_for(state="attached")
        values.append(opt.first.get_attribute("value"))
    page.locator(f"{css} select").select_option(value=values)


def unfold(page, css: str, index: int = 0) -> None:
    """Open section ``index`` of the accordion ``css`` (marker filters, archive options) if folded."""
    section = page.locator(f"{css} .jupyter-widget-Collapse").nth(index)
    if "lm-mod-hidden" in (section.locator(".jupyter-widget-Collapse-contents").get_attribute("class") or ""):
        section.locator(".jupyter-widget-Collapse-header").click()
    expect_visible(section.locator(".jupyter-widget-Collapse-contents"))


def expect_visible(locator) -> None:
    from playwright.sync_api import expect

    expect(locator).to_be_visible()


def status(page) -> str:
    return page.locator(".zipkit-status").inner_text()


def wait_status(page, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = status(page)
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"status never matched {pattern!r}; it says: {text!r}")
        time.sleep(0.05)


def test_preview_zip_and_refusal(page, served):
    from playwright.sync_api import expect

    root = served[1]
    demo = root / "demo"
    out = root / "zips-from-browser"

    # A folder outside the root is refused, and nothing is offered from it.
    fill(page, ".zipkit-source", "/etc")
    wait_status(page, r"outside the folder this form may use")

    fill(page, ".zipkit-source", str(demo / "output" / "csv"))
    page.locator(".zipkit-extensions option", has_text=re.compile(r"^csv\s+—\s+33\s+files")).wait_for()
    pick(page, ".zipkit-extensions", "csv")
    page.locator(".zipkit-stem-mode input[type=radio]").nth(1).check()
    fill(page, ".zipkit-markers", str(demo / "models"))
    pick(page, ".zipkit-marker-extensions", "yml")
    fill(page, ".zipkit-output", str(out))

    page.locator(".zipkit-preview").click()
    table = page.locator(".zipkit-result .zipkit-plan-table")
    table.wait_for()
    assert table.locator("tbody tr").count() == 8
    assert "campaign_summary.csv" in page.locator(".zipkit-result").inner_text()  # unmatched, said
    assert "FST2F_FST1F_LWL_000deg" in table.inner_text()
    assert not out.exists(), "Preview must write nothing"

    page.locator(".zipkit-zip").click()
    report = page.locator(".zipkit-result .zipkit-report-table")
    report.wait_for(timeout=60_000)
    assert report.locator("tbody tr.zipkit-ok").count() == 8
    assert re.search(r"^done: 8 ok of 8 stem", wait_status(page, r"^done"))

    archives = sorted(p.name for p in out.iterdir())
    assert archives == sorted(f"{c}.zip" for c in _cases(demo))
    for name in archives:
        with zipfile.ZipFile(out / name) as zf:
            assert zf.testzip() is None
            stem = name[:-4]
            assert zf.namelist() == sorted(f"{stem}_{m}.csv" for m in
                                           ("Jacket1", "Jacket2", "Mooring1", "Strut1"))
    expect(page.locator(".zipkit-cancel")).to_be_disabled()
    expect(page.locator(".zipkit-zip")).to_be_enabled()


def _cases(demo: Path) -> list[str]:
    return [p.stem for p in (demo / "models").glob("*.yml")]


def _pool_workers(kernel_pids: set[int]) -> list[psutil.Process]:
    """Live worker processes under the served kernels (children of their forkserver)."""
    found = []
    for pid in kernel_pids:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    parent = p.parent()
                    if parent is not None and parent.pid not in kernel_pids \
                            and p.status() != psutil.STATUS_ZOMBIE:
                        found.append(p)
    return found


def _kernels(voila: int) -> set[int]:
    """The kernels that our Voilà started (one per page)."""
    return {p.pid for p in psutil.Process(voila).children()
            if "ipykernel" in " ".join(p.cmdline())}


def test_cancel_stops_quickly_and_leaves_nothing_half_written(page, served):
    from playwright.sync_api import expect

    _, root, voila = served
    out = root / "big-zips"
    fill(page, ".zipkit-source", str(root / "big"))
    pick(page, ".zipkit-extensions", "dat")
    page.locator(".zipkit-stem-mode input[type=radio]").nth(0).check()
    fill(page, ".zipkit-output", str(out))
    unfold(page, ".zipkit-options")
    page.locator(".zipkit-compression select").select_option("bzip2")
    # bzip2 has no level 0: once it is gone the level choices are bzip2's (they sync by index)
    expect(page.locator(".zipkit-level option", has_text=re.compile(r"^0$"))).to_have_count(0)
    page.locator(".zipkit-level select").select_option("9")
    kernels = _kernels(voila)
    assert kernels, "no kernel under voila"

    page.locator(".zipkit-zip").click()
    # Running: bytes are moving, the form answers, Zip is disabled and Cancel enabled.
    wait_status(page, r"zipping: \d+/6 stems, [1-9][\d.]* [KM]iB of", timeout=60)
    expect(page.locator(".zipkit-zip")).to_be_disabled()
    expect(page.locator(".zipkit-cancel")).to_be_enabled()
    assert _pool_workers(kernels), "expected worker processes under the kernel"
    t0 = time.monotonic()
    page.locator(".zipkit-cancel").click()
    text = wait_status(page, r"^cancelled", timeout=10)
    stopped = time.monotonic() - t0
    assert stopped < 5, f"cancel took {stopped:.1f} s"
    assert re.search(r"\d+ cancelled of 6 stem", text), text

    # Workers are gone within a few seconds; nothing half-written is left.
    deadline = time.monotonic() + 5
    while _pool_workers(kernels) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pool_workers(kernels), "worker processes still running after cancel"
    report = page.locator(".zipkit-result .zipkit-report-table")
    report.wait_for()
    ok_rows = report.locator("tbody tr.zipkit-ok").count()
    assert report.locator("tbody tr.zipkit-cancelled").count() >= 1
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".zipkit-")], names
    zips = [n for n in names if n.endswith(".zip")]
    assert len(zips) == ok_rows  # only the stems that finished have an archive
    for name in zips:
        with zipfile.ZipFile(out / name) as zf:
            assert zf.testzip() is None
    assert sorted(root.joinpath("big").iterdir())  # sources untouched
    assert len(list((root / "big").iterdir())) == BIG_STEMS
    time.sleep(1)  # and nothing more appears afterwards
    assert sorted(p.name for p in out.iterdir()) == names
    expect(page.locator(".zipkit-zip")).to_be_enabled()
    expect(page.locator(".zipkit-cancel")).to_be_disabled()
