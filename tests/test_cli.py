"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from signal_helpers import default_signals


def zk(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zipkit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    for s in ("run1", "run2", "run10"):
        for ext in ("dat", "sim", "log"):
            (d / f"{s}.{ext}").write_text(f"{s} {ext}\n" * 100)
    return d


def test_zips_by_stem_and_exits_0(src, tmp_path):
    r = zk(str(src), "--ext", "dat,SIM", "-o", str(tmp_path / "out"), "-j", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "3 ok of 3" in r.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run1.zip", "run10.zip", "run2.zip"]
    with zipfile.ZipFile(tmp_path / "out" / "run1.zip") as zf:
        assert zf.namelist() == ["run1.dat", "run1.sim"]


def test_dry_run_prints_plan_and_writes_nothing(src, tmp_path):
    r = zk(str(src), "--ext", "dat", "-o", str(tmp_path / "out"), "--dry-run")
    assert r.returncode == 0
    assert "3 archive(s) to write" in r.stdout and "run10" in r.stdout
    assert not (tmp_path / "out").exists()


def test_console_script_and_help_are_quick():
    exe = Path(sys.executable).with_name("zipkit")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--ext" in r.stdout and "Exit codes" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}", "--ext", "dat"], "source folder does not exist"),
    (["{src}", "--ext", "dat", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["{src}", "--ext", "xyz"], "nothing to do"),
    (["{src}"], "give the extensions"),
    (["{src}", "--ext", "dat", "-j", "many"], "expected 'auto' or a positive integer"),
    (["{src}", "--ext", "dat", "--overwrite", "sometimes"], "invalid choice"),
    (["{src}", "--ext", "dat", "--stems", "../evil"], "would escape the output folder"),
])
def test_bad_usage_exits_2_with_one_line(src, tmp_path, args, message):
    args = [a.format(src=src, missing=tmp_path / "missing") for a in args]
    r = zk(*args, "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_failed_stem_exits_1_and_names_it(src, tmp_path):
    """An unreadable file fails its stem only; root's override is dropped so permissions bite."""
    os.chmod(src / "run2.sim", 0)
    cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
           "--inh-caps=-dac_override,-dac_read_search",
           sys.executable, "-m", "zipkit", str(src), "--ext", "dat,sim", "-o", str(tmp_path / "out"),
           "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "failed: run2: Permission denied" in r.stderr and "run2.sim" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run1.zip", "run10.zip"]
    assert (src / "run2.dat").exists()


def test_ignored_entries_are_reported_not_failures(src, tmp_path):
    (src / "run10.sim").unlink()
    (src / "run10.sim").mkdir()  # a folder named like a data file
    r = zk(str(src), "--ext", "dat,sim", "-o", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "ignored: run10.sim (folder)" in r.stdout


def test_interrupt_exits_130_and_leaves_no_temp(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    for i in range(8):
        (src / f"s{i}.bin").write_bytes(os.urandom(4 << 20))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "zipkit", str(src), "--ext", "bin", "-o", str(out),
                          "-c", "lzma", "-l", "6", "-j", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_signals)  # SIGINT's default, however pytest was started
    deadline = time.time() + 30
    while time.time() < deadline and not (out.exists() and any(out.iterdir())):
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not list(out.glob(".zipkit-*"))
    for z in out.glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            assert zf.testzip() is None
