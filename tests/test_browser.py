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
VIEWPORT = {"width": 1280, "height": 800}  # issue 16: everything that matters on screen at this size


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
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
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


def test_cancel_stops_quickly_and_leaves_nothing_half_written(page, served, tmp_path):
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
    # Inputs are locked; the bar has rate, elapsed and ETA; the stems at work are shown.
    for css in (".zipkit-source input", ".zipkit-extensions select", ".zipkit-output input",
                ".zipkit-compression select", ".zipkit-source-browse select"):
        expect(page.locator(css)).to_be_disabled()
    expect(page.locator(".zipkit-progress-text")).to_have_text(
        re.compile(r"[\d.]+ [KM]iB/s, elapsed \d\d:\d\d, ETA (\d\d:\d\d|\?)"))
    expect(page.locator(".zipkit-stems .zipkit-stem-zipping").first).to_be_visible(timeout=30_000)
    expect(page.locator(".zipkit-stems .zipkit-stem-queued").first).to_be_visible()
    page.screenshot(path=tmp_path / "running.png")
    assert _pool_workers(kernels), "expected worker processes under the kernel"
    t0 = time.monotonic()
    page.locator(".zipkit-cancel").click()
    text = wait_status(page, r"^cancelled", timeout=10)
    stopped = time.monotonic() - t0
    assert stopped < 5, f"cancel took {stopped:.1f} s"
    assert re.search(r"\d+ cancelled of 6 stem", text), text
    assert "press Zip again" in text

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
    assert not [n for n in names if n.startswith("zipkit-errors-")], names  # nothing failed
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
    expect(page.locator(".zipkit-source input")).to_be_enabled()
    page.screenshot(path=tmp_path / "cancelled.png", full_page=True)


def in_view(page, locator) -> bool:
    """The element is drawn wholly inside the 1280×800 viewport, with no scrolling."""
    box = locator.bounding_box()
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    return (box is not None and scroll == [0, 0] and box["width"] > 0 and box["x"] >= 0
            and box["y"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]
            and box["y"] + box["height"] <= VIEWPORT["height"])


def test_actions_and_every_error_are_on_screen_at_1280x800(page, served, tmp_path):
    from playwright.sync_api import expect

    root = served[1]
    page.screenshot(path=tmp_path / "first-load.png")
    for css in (".zipkit-preview", ".zipkit-zip", ".zipkit-cancel", ".zipkit-status", ".zipkit-source",
                ".zipkit-extensions", ".zipkit-output"):
        assert in_view(page, page.locator(css)), f"{css} is not on screen at first load"

    # Three fields at fault at once: each is marked, its message beside it, all on screen.
    fill(page, ".zipkit-source", "/etc")
    page.locator(".zipkit-marker-extensions select").select_option([])
    unfold(page, ".zipkit-filters")
    fill(page, ".zipkit-regex", "(unclosed")
    page.locator(".zipkit-filters .jupyter-widget-Collapse-header").click()  # fold it again
    page.locator(".zipkit-preview").click()
    wait_status(page, r"^error: ")
    expect(page.locator(".zipkit-regex-error")).to_be_visible()  # the filters unfolded themselves
    for name, words in (("source", "outside the folder this form may use"),
                        ("marker-extensions", "pick at least one marker extension"),
                        ("regex", "stem regex")):
        expect(page.locator(f".zipkit-{name}.zipkit-invalid")).to_have_count(1)
        message = page.locator(f".zipkit-{name}-error")
        expect(message).to_contain_text(words)
        assert in_view(page, message), f"the {name} message is off screen"
    assert in_view(page, page.locator(".zipkit-status"))
    assert in_view(page, page.locator(".zipkit-preview"))
    page.screenshot(path=tmp_path / "errors.png")

    # Fixed fields lose their marks and messages.
    fill(page, ".zipkit-source", str(root / "demo" / "output" / "csv"))
    expect(page.locator(".zipkit-source.zipkit-invalid")).to_have_count(0)
    expect(page.locator(".zipkit-source-error")).to_be_hidden()
    fill(page, ".zipkit-regex", "deg$")
    expect(page.locator(".zipkit-regex.zipkit-invalid")).to_have_count(0)
    pick(page, ".zipkit-marker-extensions", "yml")
    expect(page.locator(".zipkit-field-error:visible")).to_have_count(0)

    # A preview's table goes when an input changes: it no longer describes the form.
    page.locator(".zipkit-preview").click()
    expect(page.locator(".zipkit-result .zipkit-plan-table")).to_be_visible()
    page.screenshot(path=tmp_path / "preview.png", full_page=True)
    fill(page, ".zipkit-output", "elsewhere")
    expect(page.locator(".zipkit-result .zipkit-plan-table")).to_have_count(0)

    # The YAML field's message shows beside it too, on screen (the YAML section is beside the actions).
    unfold(page, ".zipkit-yaml")
    fill(page, ".zipkit-config-path", "job.txt")
    page.locator(".zipkit-save-yaml").click()
    message = page.locator(".zipkit-config-path-error")
    expect(message).to_contain_text("must end in .yml or .yaml")
    assert in_view(page, message) and in_view(page, page.locator(".zipkit-status"))
    page.screenshot(path=tmp_path / "yaml-error.png")


def test_the_level_is_never_blank_after_quick_compression_changes(page):
    from playwright.sync_api import expect

    unfold(page, ".zipkit-options")
    level = page.locator(".zipkit-level select")
    level.select_option("9")
    compression = page.locator(".zipkit-compression select")
    for name in ("bzip2", "stored", "lzma", "deflate", "bzip2", "stored", "deflate", "lzma"):
        compression.select_option(name)  # no waiting: messages cross on the way
    time.sleep(1.5)
    expect(compression).to_have_value("lzma")
    assert level.evaluate("s => s.selectedIndex") >= 0
    shown = level.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''")
    assert shown in ("default", "9"), shown  # lzma offers 9; never blank
    assert [o.strip() for o in level.locator("option").all_inner_texts()] == ["default", *map(str, range(10))]


def test_the_folder_picker_stays_inside_the_root(page, served):
    root = served[1]
    picker = page.locator(".zipkit-source-browse select")
    fill(page, ".zipkit-source", str(root))
    labels = lambda: [t.strip() for t in picker.locator("option").all_inner_texts()]  # noqa: E731
    deadline = time.monotonic() + 10
    while "demo/" not in labels() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ".." not in labels() and "demo/" in labels(), labels()
    picker.select_option(label="demo/")
    page.wait_for_function("() => document.querySelector('.zipkit-source input').value.endsWith('/demo')")
    picker.select_option(label="output/")
    picker.select_option(label="csv/")
    page.locator(".zipkit-extensions option", has_text=re.compile(r"^csv\s+—\s+\d+\s+files")).wait_for()
    assert page.locator(".zipkit-source input").input_value() == str(root / "demo" / "output" / "csv")


def test_delete_sources_asks_downloads_and_says_what_it_deleted(page, served, tmp_path):
    from playwright.sync_api import expect

    root = served[1]
    csv = root / "demo" / "output" / "csv"
    out = root / "zips-deleting"
    fill(page, ".zipkit-output", str(out))
    unfold(page, ".zipkit-options")
    page.locator(".zipkit-delete-sources input").check()
    page.locator(".zipkit-zip").click()
    confirm = page.locator(".zipkit-confirm-delete")
    expect(confirm).to_be_visible()
    for css in (".zipkit-confirm-delete", ".zipkit-keep-sources"):  # labels not cut off
        clipped = page.locator(css).evaluate("b => b.scrollWidth > b.clientWidth")
        assert not clipped, f"{css}: its label is cut off"
        assert in_view(page, page.locator(css))
    page.screenshot(path=tmp_path / "confirm.png")
    n = len([p for p in csv.iterdir() if p.name != "campaign_summary.csv"])
    confirm.click()
    text = wait_status(page, r"^done", timeout=60)
    assert re.search(rf"{n} source file\(s\) deleted \([\d.]+ [KM]iB\)$", text), text
    said = re.compile(rf"{n} source file\(s\) deleted \([\d.]+ [KM]iB\)")
    expect(page.locator(".zipkit-result .zipkit-deleted")).to_contain_text(said)  # the report says it
    # The extension list no longer counts the deleted files.
    page.locator(".zipkit-extensions option", has_text=re.compile(r"^csv\s+—\s+1\s+file,")).wait_for()
    assert [p.name for p in csv.iterdir()] == ["campaign_summary.csv"]

    # The archives can be had from the browser: a download, byte for byte the archive.
    link = page.locator(".zipkit-downloads a.zipkit-download").first
    name = link.inner_text()
    with page.expect_download() as info:
        link.click()
    got = tmp_path / "downloaded.zip"
    info.value.save_as(got)
    assert got.read_bytes() == (out / name).read_bytes()
    with zipfile.ZipFile(got) as zf:
        assert zf.testzip() is None and len(zf.namelist()) == 4
    page.screenshot(path=tmp_path / "deleted.png", full_page=True)
