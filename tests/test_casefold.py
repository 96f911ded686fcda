"""Archive names on a real case-insensitive output file system (a FUSE passthrough that folds
case and Unicode normalisation, as macOS and Windows shares do: tests/casefold_fs.py).

Two stems whose archive names are one file there are refused before any work (exit 2, both
stems named); an existing archive under another spelling is seen by the plan as existing, so
every ``--overwrite`` policy does what it says; the probe leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import casefold_fs
import pytest
from safety_helpers import (
    assert_no_temp_files,
    assert_nothing_lost,
    member_hashes,
    snapshot,
    subprocess_env,
    without_dac_override,
    write,
    zipkit_cmd,
)

import zipkit
from zipkit import plan, zip_by_extension
from zipkit._errors import UsageError

casefold_dir = casefold_fs.casefold_dir  # the fixture: an empty folder on that file system
POLICIES = ["always", "update", "never", "replace"]
NFC, NFD = unicodedata.normalize("NFC", "caf\u00e9"), unicodedata.normalize("NFD", "caf\u00e9")


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(zipkit_cmd(*args), capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (stored names) with a file's bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


# --- the file system itself ---------------------------------------------------------------------

def test_the_test_file_system_folds_case_and_normalisation_and_keeps_stored_names(
        casefold_dir: Path) -> None:
    d = casefold_dir
    write(d / "run1.zip", b"first")
    assert os.path.ismount(d)
    assert (d / "RUN1.zip").read_bytes() == b"first"
    assert os.lstat(d / "Run1.ZIP").st_ino == os.lstat(d / "run1.zip").st_ino
    with pytest.raises(FileExistsError):
        os.open(d / "RUN1.zip", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    write(d / NFC, b"nfc")
    assert (d / NFD).read_bytes() == b"nfc"
    assert sorted(os.listdir(d)) == sorted(["run1.zip", NFC])  # stored spellings, one each
    write(d / "new.tmp", b"second")
    os.replace(d / "new.tmp", d / "RUN1.zip")  # replaces run1.zip
    assert sorted(os.listdir(d)) == sorted(["run1.zip", NFC]) and (d / "run1.zip").read_bytes() == b"second"
    os.mkdir(d / "Sub")
    os.rmdir(d / "sub")
    os.unlink(d / "RUN1.ZIP")
    os.unlink(d / NFD)
    assert os.listdir(d) == []


def test_flock_through_the_test_file_system_excludes_another_process(casefold_dir: Path) -> None:
    """zipkit's temp-area marks are flocks: through FUSE they are the kernel's own, and work."""
    lock = casefold_dir / ".zipkit-x.lock.tmp"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
                 "try:\n    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)\nexcept BlockingIOError:\n"
                 "    sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 3
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0
    finally:
        os.close(fd)


# --- colliding archive names are refused --------------------------------------------------------

@pytest.mark.parametrize("layout", ["sources elsewhere", "sources there too", "same folder"])
@pytest.mark.parametrize("delete", [False, True])
def test_stems_that_differ_only_by_case_are_refused_before_any_work(
        tmp_path: Path, casefold_dir: Path, layout: str, delete: bool) -> None:
    if layout == "sources elsewhere":
        src, out = tmp_path / "src", casefold_dir / "out"
        write(src / "Run1.dat", b"upper\n" * 100)
        write(src / "run1.dat", b"lower\n" * 100)
        exts = ["dat"]
    else:  # Run1.dat and run1.dat cannot both be there: Run1.dat and run1.log can
        src = casefold_dir / "src"
        out = src if layout == "same folder" else casefold_dir / "out"
        write(src / "Run1.dat", b"upper\n" * 100)
        write(src / "run1.log", b"lower\n" * 100)
        exts = ["dat", "log"]
    write(src / "other.dat", b"an innocent stem\n")
    before = _tree(casefold_dir)
    snap = snapshot(src)
    r = _cli(src, *(f"--ext={x}" for x in exts), "-o", out, *(["--delete-sources"] if delete else []))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "'Run1'" in r.stderr and "'run1'" in r.stderr and "same file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert _tree(casefold_dir) == before  # nothing written, nothing deleted, no probe left
    assert_nothing_lost(snap, out)
    with pytest.raises(UsageError, match="'Run1' and 'run1'"):
        plan(src, exts, out)


@pytest.mark.parametrize("sources_there", [False, True])
def test_stems_that_differ_only_by_unicode_normalisation_are_refused(
        tmp_path: Path, casefold_dir: Path, sources_there: bool) -> None:
    src, out = (casefold_dir if sources_there else tmp_path) / "src", casefold_dir / "out"
    write(src / f"{NFC}.dat", b"composed\n")
    write(src / f"{NFD}.{'log' if sources_there else 'dat'}", b"decomposed\n")
    snap = snapshot(src)
    before = _tree(casefold_dir)
    r = _cli(src, "--ext", "dat", "--ext", "log", "-o", out, "--delete-sources")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert repr(NFC) in r.stderr and repr(NFD) in r.stderr, r.stderr
    assert _tree(casefold_dir) == before  # the output folder was never made
    assert_nothing_lost(snap, out)
    if sources_there:
        return
    # the same sources into a folder that tells them apart: two archives
    normal = tmp_path / "normal"
    rep = zip_by_extension(src, "dat", normal, progress=False, workers=1)
    assert rep.success and sorted(os.listdir(normal)) == sorted([f"{NFC}.zip", f"{NFD}.zip"])


def test_the_probe_leaves_nothing_behind(tmp_path: Path, casefold_dir: Path) -> None:
    """Probed on the case-insensitive folder (it folds: refused), on a missing output folder
    (probed in its parent) and on an ordinary folder (it does not fold: two archives planned)."""
    src = tmp_path / "src"
    write(src / "Run1.dat", b"a")
    write(src / "run1.dat", b"b")
    existing = casefold_dir / "out"
    existing.mkdir()
    for out in (existing, casefold_dir / "missing" / "deeper"):
        with pytest.raises(UsageError, match="'Run1' and 'run1'"):
            plan(src, "dat", out)
    assert _tree(casefold_dir) == {"out": None}
    assert _tree(casefold_dir.with_name(casefold_dir.name + ".backing")) == {"out": None}
    normal = tmp_path / "normal"
    normal.mkdir()
    p = plan(src, "dat", normal)
    assert [s.archive.name for s in p.stems] == ["Run1.zip", "run1.zip"]
    assert os.listdir(normal) == [] and sorted(os.listdir(src)) == ["Run1.dat", "run1.dat"]


# --- an existing archive under another spelling -------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_an_existing_archive_spelled_otherwise_is_seen_by_the_plan(tmp_path: Path, casefold_dir: Path,
                                                                   policy: str) -> None:
    """``RUN1.zip`` is there and stem ``run1`` is planned: that archive exists. never skips it,
    always and update merge it, replace rebuilds it; --dry-run says so and writes nothing."""
    src, out = tmp_path / "src", casefold_dir
    write(src / "old.dat", b"archived before\n" * 50)
    first = zip_by_extension(src, "dat", out, progress=False, workers=1)
    assert first.success
    os.rename(out / "old.zip", out / "RUN1.zip")
    assert os.listdir(out) == ["RUN1.zip"]
    os.unlink(src / "old.dat")
    write(src / "run1.dat", b"new data\n" * 50)
    old_bytes = (out / "RUN1.zip").read_bytes()
    snap = snapshot(src)

    p = plan(src, "dat", out, overwrite=policy)
    (s,) = p.stems
    want = {"never": "skip", "always": "merge", "update": "merge", "replace": "replace"}[policy]
    assert s.action == want, (s.action, s.reason)
    r = _cli(src, "--ext", "dat", "-o", out, "--overwrite", policy, "--dry-run", "--all")
    assert r.returncode == 0, (r.stdout, r.stderr)
    said = {"never": "archive exists", "always": "merge: 1 member kept", "update": "merge: 1 member kept",
            "replace": "replace: 1 member dropped"}[policy]
    assert said in r.stdout, r.stdout
    assert (out / "RUN1.zip").read_bytes() == old_bytes and os.listdir(out) == ["RUN1.zip"]

    rep = zipkit.run_plan(p, progress=False, workers=1)
    assert rep.success, rep
    assert os.listdir(out) == ["RUN1.zip"]  # one archive, never a second spelling
    assert_no_temp_files(out)
    members = sorted(member_hashes(out / "RUN1.zip"))
    if policy == "never":
        assert (out / "RUN1.zip").read_bytes() == old_bytes
    elif policy == "replace":
        assert members == ["run1.dat"]
    else:
        assert members == ["old.dat", "run1.dat"]
    assert_nothing_lost(snap, out)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("layout", "workers"), [("sources elsewhere", 1), ("same folder", 2)])
def test_delete_sources_runs_into_a_case_insensitive_folder_lose_nothing(
        tmp_path: Path, casefold_dir: Path, policy: str, layout: str, workers: int) -> None:
    """Run 1 archives RUN1.dat + RUN1.log (deleted); run 2 archives a new run1.dat, whose
    archive run1.zip is RUN1.zip there: merged (always, update), skipped (never) or rebuilt
    (replace, which drops the first run's members by name and says so)."""
    src = tmp_path / "src" if layout == "sources elsewhere" else casefold_dir
    out = casefold_dir
    write(src / "RUN1.dat", b"first dat\n" * 400)
    write(src / "RUN1.log", b"the only copy of the log\n" * 300)
    first_snap = snapshot(src)
    first = zip_by_extension(src, ["dat", "log"], out, delete_sources=True, progress=False,
                             workers=workers)
    assert first.success, first
    assert not any(n.endswith((".dat", ".log")) for n in os.listdir(src))
    write(src / "run1.dat", b"second dat\n" * 400)
    snap = snapshot(src, exclude=lambda q: q.suffix == ".zip")

    r = _cli(src, "--ext", "dat", "-o", out, "--overwrite", policy, "--delete-sources",
             "--workers", workers, "--no-progress")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert sorted(n for n in os.listdir(out) if n.endswith(".zip")) == ["RUN1.zip"]
    members = sorted(member_hashes(out / "RUN1.zip"))
    if policy == "never":
        assert members == ["RUN1.dat", "RUN1.log"] and (src / "run1.dat").is_file()
        assert_nothing_lost({**first_snap, **snap}, out)
        return
    assert not (src / "run1.dat").exists()
    if policy == "replace":
        assert members == ["run1.dat"]
        assert "RUN1.dat" in r.stdout and "RUN1.log" in r.stdout, r.stdout  # the dropped are said
        assert_nothing_lost(snap, out)
    else:
        assert members == ["RUN1.dat", "RUN1.log", "run1.dat"]
        assert_nothing_lost({**first_snap, **snap}, out)


def test_an_error_report_path_that_is_an_archive_spelled_otherwise_is_refused(
        tmp_path: Path, casefold_dir: Path) -> None:
    """``--error-report OUT/RUN1.ZIP`` where stem ``run1`` will write ``run1.zip``: the report
    would replace the archive (and, with --delete-sources, the only copy). Refused up front
    there; on a folder that tells them apart both are written."""
    src = tmp_path / "src"
    write(src / "run1.dat", b"the only copy\n" * 100)
    write(src / "bad.dat", b"unreadable\n")
    os.chmod(src / "bad.dat", 0)  # a failure, so that the report is written
    snap = snapshot(src)
    args = (src, "--ext", "dat", "--delete-sources", "--no-progress")
    r = subprocess.run([*without_dac_override(), *zipkit_cmd(*args, "-o", casefold_dir, "--error-report",
                                                             casefold_dir / "RUN1.ZIP")],
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "RUN1.ZIP" in r.stderr and "'run1'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert os.listdir(casefold_dir) == []
    assert_nothing_lost(snap, casefold_dir)
    normal = tmp_path / "normal"
    r = subprocess.run([*without_dac_override(), *zipkit_cmd(*args, "-o", normal, "--error-report",
                                                             normal / "RUN1.ZIP")],
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert sorted(os.listdir(normal)) == ["RUN1.ZIP", "run1.zip"]
    assert sorted(member_hashes(normal / "run1.zip")) == ["run1.dat"]
    assert_nothing_lost(snap, normal)


@pytest.mark.parametrize("extra", [[], ["--delete-sources"]])
def test_the_source_folder_spelled_otherwise_as_output_is_refused(casefold_dir: Path,
                                                                   extra: list[str]) -> None:
    """``-o SRC`` for source folder ``src``: the archive ``SRC/a.zip`` is the source ``a.zip``."""
    src = casefold_dir / "src"
    write(src / "a.dat", b"data\n" * 10)
    zip_by_extension(src, "dat", casefold_dir / "first", progress=False, workers=1)
    os.replace(casefold_dir / "first" / "a.zip", src / "a.zip")  # a zip the user keeps as a source
    snap = snapshot(src)
    before = _tree(casefold_dir)
    r = _cli(src, "--ext", "dat", "--ext", "zip", "-o", casefold_dir / "SRC", *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "an input is never an output" in r.stderr and "spelling" in r.stderr, r.stderr
    assert _tree(casefold_dir) == before
    assert_nothing_lost(snap, src)
