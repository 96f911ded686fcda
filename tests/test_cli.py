"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from safety_helpers import assert_unreadable, without_dac_override
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
    (["{src}", "--ext", "dat", "-j", "many"], "must be 'auto' or an integer from 1 to 4096, not 'many'"),
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
    assert "ignored run10.sim: folder" in r.stdout  # the plan's note, in the report too


def test_interrupt_exits_130_and_leaves_no_temp(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    for i in range(8):
        (src / f"s{i}.bin").write_bytes(os.urandom(2 << 20).hex().encode())  # compressible: lzma is slow
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


# --- closed and broken output streams ------------------------------------------------------------
@pytest.fixture
def many(tmp_path: Path) -> Path:
    """600 stems: the report (~40 KB) and the plan are more than a reader of one line takes."""
    d = tmp_path / "many"
    d.mkdir()
    for i in range(600):
        (d / f"case{i:04d}_with_a_long_name.dat").write_text(f"{i}\n")
    return d


def zk_into_closed_pipe(*args: str, stream: str = "stdout", prefix: Sequence[str] = ()) -> tuple[int, str]:
    """Run zipkit with stdout (or stderr) a pipe whose reader is already gone: every write fails."""
    r, w = os.pipe()
    os.close(r)
    other = subprocess.PIPE
    try:
        kw = {"stdout": w, "stderr": other} if stream == "stdout" else {"stdout": other, "stderr": w}
        p = subprocess.Popen([*prefix, sys.executable, "-m", "zipkit", *args], text=True, **kw)
    finally:
        os.close(w)
    out, err = p.communicate(timeout=120)
    return p.returncode, (err if stream == "stdout" else out) or ""


def assert_all_archived(src: Path, out: Path) -> None:
    names = sorted(p.name for p in out.glob("*.zip"))
    assert names == sorted(p.with_suffix(".zip").name for p in src.glob("*.dat"))
    assert not list(out.glob(".zipkit-*"))
    for z in out.glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            assert zf.testzip() is None


@pytest.mark.parametrize("extra", [[], ["-q"], ["-j", "1"]])
def test_a_reader_gone_before_the_report_is_not_a_failure(many, tmp_path, extra):
    code, err = zk_into_closed_pipe(str(many), "--ext", "dat", "-o", str(tmp_path / "out"), "--no-progress",
                                    *extra)
    assert code == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "Broken pipe" not in err, err
    assert_all_archived(many, tmp_path / "out")


@pytest.mark.parametrize("args", [["--dry-run"], ["--help"], ["--version"]])
def test_plan_help_and_version_into_a_closed_pipe_exit_0(many, tmp_path, args):
    code, err = zk_into_closed_pipe(str(many), "--ext", "dat", "-o", str(tmp_path / "out"), *args)
    assert (code, err) == (0, "")
    assert not (tmp_path / "out").exists()


def test_a_failed_run_into_a_closed_pipe_still_exits_1(many, tmp_path):
    unreadable = many / "case0001_with_a_long_name.dat"
    os.chmod(unreadable, 0)
    prefix = without_dac_override()
    assert_unreadable(unreadable, prefix)
    out = tmp_path / "out"
    code, err = zk_into_closed_pipe(str(many), "--ext", "dat", "-o", str(out), "--no-progress", prefix=prefix)
    assert code == 1, err
    assert "failed: case0001_with_a_long_name: Permission denied" in err  # stderr is open: it is said
    assert "Traceback" not in err
    assert len(list(out.glob("*.zip"))) == 599 and not list(out.glob(".zipkit-*"))


def test_errors_into_a_closed_stderr_keep_exit_2(tmp_path):
    code, out = zk_into_closed_pipe(str(tmp_path / "missing"), "--ext", "dat", stream="stderr")
    assert code == 2 and "Traceback" not in out


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``bash -c script`` with this Python as ``$PY``: real pipes and closed descriptors, as users type."""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=180,
                          env={**os.environ, "PY": sys.executable})


@pytest.mark.parametrize(("zipkit_args", "code"), [
    ("many --ext dat -o out --no-progress", 0),
    ("many --ext dat -o out", 0),  # with the progress bar on stderr
    ("many --ext dat -o out --dry-run", 0),
    ("cfg.yml --print-config", 0),
    ("cfg.yml --no-progress", 0),
])
def test_piped_into_head_exits_as_ls_does_with_everything_archived(many, tmp_path, zipkit_args, code):
    (tmp_path / "cfg.yml").write_text("analysis: {input_directory: many, filename: {extension: [dat]}}\n"
                                      "file_management: {output_directory: out}\n"
                                      "meta: {notes: [" + ", ".join(["a long note"] * 8000) + "]}\n")
    r = shell(f'set -o pipefail; "$PY" -m zipkit {zipkit_args} | head -1; echo "status=$?"', tmp_path)
    assert r.stdout.strip().endswith(f"status={code}"), (r.stdout[-500:], r.stderr[-2000:])
    assert len(r.stdout.strip().splitlines()) == 2  # head's one line and the status
    for words in ("Traceback", "Exception ignored", "Broken pipe"):
        assert words not in r.stderr, r.stderr[-2000:]
    if "--dry-run" in zipkit_args or "--print-config" in zipkit_args:
        assert not (tmp_path / "out").exists()
    else:
        assert_all_archived(many, tmp_path / "out")


@pytest.mark.parametrize("redirect", ["2>&-", ">&-", ">&- 2>&-", "2>&1 | head -1 >/dev/null"])
def test_closed_stdout_or_stderr_still_archives_everything_and_exits_0(many, tmp_path, redirect):
    # fd 3 keeps the shell's stdout for the status line, whatever the redirection closes
    r = shell(f'exec 3>&1; set -o pipefail; "$PY" -m zipkit many --ext dat -o out {redirect}; '
              f'echo "status=$?" >&3', tmp_path)
    assert r.stdout.strip().splitlines()[-1] == "status=0", (r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stdout + r.stderr
    assert_all_archived(many, tmp_path / "out")
    for z in (tmp_path / "out").glob("*.zip"):  # nothing printed landed in an archive's descriptor
        with zipfile.ZipFile(z) as zf:
            assert len(zf.namelist()) == 1


def test_a_script_calling_the_library_with_stderr_closed_archives_everything(many, tmp_path):
    """No progress bar can be drawn on a closed stderr (sys.stderr is None): the run goes on."""
    script = tmp_path / "job.py"
    script.write_text("import sys, zipkit\n"
                      f"r = zipkit.zip_by_extension({str(many)!r}, 'dat', {str(tmp_path / 'out')!r})\n"
                      "sys.exit(0 if r.success and sys.stderr is None else 3)\n")
    r = shell(f'exec 3>&1; "$PY" {script} 2>&-; echo "status=$?" >&3', tmp_path)
    assert r.stdout.strip() == "status=0", r.stdout
    assert_all_archived(many, tmp_path / "out")
