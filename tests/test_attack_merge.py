"""Issue 12 attacked as a hostile user would: cases the merge/identity/names tests did not try.

Each test here first failed (a hole, fixed alongside) or is the strongest of the attacks that
held. All end with the suite's nothing-lost checker.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest
from safety_helpers import (
    assert_nothing_lost,
    member_hashes,
    small_filesystem,
    snapshot,
    subprocess_env,
    temp_files,
    wait_until,
    write,
    zipkit_cmd,
)

import zipkit


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(zipkit_cmd(*map(str, args)), capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- inputs are never outputs: the same file under another name --------------------------------

@pytest.mark.parametrize("how", ["hard link to a csv source", "hard link to a zip source",
                                 "symlink to a source"])
def test_an_archive_path_that_is_a_source_under_another_name_is_refused(tmp_path: Path, how: str) -> None:
    """out/x.zip hard-linked (or symlinked) to a source is the very file the run reads: exit 2
    before any work, naming both paths, as for the same path (a realpath check misses a link)."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    if how == "hard link to a zip source":
        src.mkdir()
        with zipfile.ZipFile(src / "x.zip", "w") as zf:
            zf.writestr("inner.txt", "user's own archive")
        source, ext = src / "x.zip", "zip"
        write(src / "y.zip", b"")  # a second stem, so the refusal is before any work
        os.link(source, out / "x.zip")
    else:
        source, ext = write(src / "x.csv", b"the only copy\n"), "csv"
        write(src / "y.csv", b"y\n")
        if how.startswith("hard"):
            os.link(source, out / "x.zip")
        else:
            os.symlink(source, out / "x.zip")
    snap = snapshot(src)
    r = _cli(src, "--ext", ext, "-o", out, "--delete-sources", "--no-progress")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "never an output" in r.stderr, r.stderr
    assert str(out / "x.zip") in r.stderr and str(source) in r.stderr, r.stderr
    assert not (out / "y.zip").exists(), "work was done before the refusal"
    assert snapshot(src) == snap
    assert os.path.samefile(out / "x.zip", source), "the link itself was replaced"
    assert_nothing_lost(snap)


# --- an existing archive is data too: its comment -----------------------------------------------

@pytest.mark.parametrize("carried", [True, False])
def test_a_merge_keeps_the_archive_comment(tmp_path: Path, carried: bool) -> None:
    """`zip -z` wrote a comment into the archive: a merge (zip's own update keeps it) keeps it,
    also when every member is replaced; replace (an exact rebuild) is the one that drops it."""
    src, out, work = tmp_path / "src", tmp_path / "out", tmp_path / "w"
    write(work / ("old.txt" if carried else "a.csv"), b"old\n")
    out.mkdir()
    subprocess.run(["zip", "-q", out / "a.zip", "old.txt" if carried else "a.csv"], cwd=work, check=True)
    subprocess.run(["zip", "-qz", out / "a.zip"], input=b"lab notebook p. 12\n", check=True)
    write(src / "a.csv", b"new\n")
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, "csv", out, progress=False, delete_sources=True)
    assert rep["a"].status == "ok", rep["a"].message
    with zipfile.ZipFile(out / "a.zip") as zf:
        assert zf.comment == b"lab notebook p. 12", zf.comment
    assert sorted(member_hashes(out / "a.zip")) == sorted({"a.csv", "old.txt" if carried else "a.csv"})
    assert_nothing_lost(snap, out)
    write(src / "a.csv", b"newer\n")
    zipkit.zip_by_extension(src, "csv", out, progress=False, overwrite="replace")
    with zipfile.ZipFile(out / "a.zip") as zf:
        assert zf.comment == b"" and zf.namelist() == ["a.csv"]


# --- a merge that cannot finish leaves the old archive as it was --------------------------------

def _stored_archive(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_disk_full_during_the_merge_copy_keeps_the_old_archive(tmp_path: Path, workers: int) -> None:
    """1 MiB output file system holding a 600 KB archive: the merged copy cannot fit. The stem
    fails with ENOSPC, the old archive keeps every byte, no temp file stays, no source is deleted."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", os.urandom(100_000))
    write(src / "b.dat", b"small\n")
    with small_filesystem(out, 1024):
        _stored_archive(out / "a.zip", {"old1.bin": os.urandom(300_000), "old2.bin": os.urandom(300_000)})
        before = _sha(out / "a.zip")
        snap = snapshot(src, out)
        rep = zipkit.zip_by_extension(src, "dat", out, workers=workers, delete_sources=True,
                                      progress=False)
        a = rep["a"]
        assert a.status == "failed" and "No space left on device" in a.message, (a.status, a.message)
        assert _sha(out / "a.zip") == before
        assert (src / "a.dat").is_file() and not temp_files(out)
        assert_nothing_lost(snap, out)
        fs = os.statvfs(out)
        assert fs.f_bfree * fs.f_frsize > 300_000, "the failed merge's space was not freed"


def _size(path: Path) -> int:
    """The size of a temp file, 0 once the run has renamed or removed it since it was listed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_during_a_merge_keeps_the_old_archive_and_the_next_run_cleans_up(
        tmp_path: Path, workers: str) -> None:
    """SIGKILL (the whole process group) while a big member is being carried over: the old
    archive is untouched and every source kept; the next run removes the dead run's temp files
    and does the merge."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(out / "a.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("old.bin", "w", force_zip64=True) as m:  # 768 MiB of zeros: slow to check
            block = bytes(1 << 20)
            for _ in range(768):
                m.write(block)
        zf.writestr("old.txt", "archived long ago\n")
    write(src / "a.dat", b"new data\n")
    write(src / "b.dat", b"other stem\n")
    before, old = _sha(out / "a.zip"), member_hashes(out / "a.zip")
    snap = snapshot(src)
    proc = subprocess.Popen(zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", workers, "--no-progress",
                                       "--delete-sources"),
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        big = wait_until(lambda: [p for p in temp_files(out) if _size(p) > (64 << 10)], 60,
                         "the merge to be under way")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert big and proc.returncode == -signal.SIGKILL
    assert _sha(out / "a.zip") == before and (src / "a.dat").is_file()
    r = _cli(src, "--ext", "dat", "-o", out, "-j", workers, "--no-progress", "--delete-sources")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert not temp_files(out), temp_files(out)
    merged = member_hashes(out / "a.zip")
    assert sorted(merged) == ["a.dat", "old.bin", "old.txt"]
    assert all(merged[name] == digest for name, digest in old.items())
    assert_nothing_lost(snap, out)


# --- re-runs: every policy, several stems, pooled ------------------------------------------------

def test_pooled_reruns_under_every_policy_lose_nothing(tmp_path: Path) -> None:
    """Four stems, a pool of two, runs in a row with other extensions and policies and
    --delete-sources; after each, every byte that existed is on disk or in an archive, and
    every member an earlier run archived is still there unless replace was asked for."""
    src, out = tmp_path / "src", tmp_path / "out"
    stems = ["c1", "c2", "c3", "c4"]
    held: dict[tuple[str, str], str] = {}
    runs = [("always", ["dat", "log"]), ("update", ["dat"]), ("never", ["log", "sim"]),
            ("always", ["sim"]), ("update", ["dat", "log", "sim"]), ("replace", ["dat", "sim"])]
    for i, (policy, exts) in enumerate(runs):
        for s in stems:
            for ext in exts:
                if (i + len(s) + len(ext)) % 3:  # not every file every time
                    write(src / f"{s}.{ext}", f"{s}.{ext} version {i}\n".encode() * (i + 1))
        snap = snapshot(src)
        if not snap:
            continue
        rep = zipkit.zip_by_extension(src, exts, out, overwrite=policy, delete_sources=True,
                                      workers=2, progress=False)
        assert rep.success and not rep.failed, rep
        assert_nothing_lost(snap, out)
        for r in rep.ok:
            members = member_hashes(out / f"{r.stem}.zip")
            if policy == "replace":
                assert sorted(members) == sorted(r.files) and set(r.dropped) == {
                    n for (s, n) in held if s == r.stem} - set(r.files)
                held = {k: v for k, v in held.items() if k[0] != r.stem}
            for (s, name), digest in held.items():
                if s == r.stem and name not in r.files:
                    assert members.get(name) == digest, (policy, r.stem, name)
            held.update(((r.stem, n), members[n]) for n in r.files)
        for (s, name), digest in held.items():
            assert member_hashes(out / f"{s}.zip")[name] == digest


# --- the error report is never written over an input ---------------------------------------------

@pytest.mark.parametrize("link_to", ["a source", "an archive"])
def test_an_error_report_path_hard_linked_to_an_input_is_refused(tmp_path: Path, link_to: str) -> None:
    """The user archives old zipkit error reports as data (--ext json). An error-report path
    that is a hard link to one of them is that source: writing the report there would rewrite
    the source in place (its stem failed, so nowhere else holds it). Exit 2, nothing written."""
    src, out, prev = tmp_path / "src", tmp_path / "out", tmp_path / "prev"
    write(prev / "src" / "q.dat", b"q\n")
    write(prev / "out" / "q.zip", b"not a zip")
    r = _cli(prev / "src", "--ext", "dat", "-o", prev / "out", "--error-report", prev / "old.json",
             "--no-progress")
    assert r.returncode == 1 and (prev / "old.json").is_file(), r.stderr
    old_report = write(src / "old-errors.json", (prev / "old.json").read_bytes())
    write(src / "b.dat", b"data\n")
    write(out / "old-errors.zip", b"garbage: this stem fails")
    if link_to == "a source":
        os.link(old_report, out / "r.json")
    else:  # the report itself is an input now
        write(out / "b.zip", (prev / "old.json").read_bytes())
        os.link(out / "b.zip", out / "r.json")
    snap = snapshot(src, out)
    r = _cli(src, "--ext", "json", "--ext", "dat", "-o", out, "--error-report", out / "r.json",
             "--no-progress", "--delete-sources")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "never an output" in r.stderr, r.stderr
    assert snapshot(src, out) == snap
    assert_nothing_lost(snap)  # every file as it was (the garbage "archives" too)


@pytest.mark.parametrize("adjusted", [True, False])
def test_a_merge_keeps_a_self_extractor_stub(tmp_path: Path, adjusted: bool) -> None:
    """Bytes before the first member (a self-extractor stub, `cat stub x.zip`, `zip -A` or not)
    are the user's too: zip's update keeps them, so does a merge; the result reads everywhere."""
    src, out, work = tmp_path / "src", tmp_path / "out", tmp_path / "w"
    write(work / "old.txt", b"archived long ago\n")
    subprocess.run(["zip", "-q", work / "x.zip", "old.txt"], cwd=work, check=True)
    stub = b"#!/bin/sh\necho self-extracting\nexit 0\n" + os.urandom(3000)
    write(out / "a.zip", stub + (work / "x.zip").read_bytes())
    if adjusted:
        subprocess.run(["zip", "-qA", out / "a.zip"], check=True)
    old = member_hashes(out / "a.zip")
    write(src / "a.csv", b"new\n")
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, "csv", out, progress=False, delete_sources=True)
    assert rep["a"].status == "ok" and rep["a"].carried == 1, rep["a"].message
    assert (out / "a.zip").read_bytes()[:len(stub)] == stub, "the stub was dropped"
    merged = member_hashes(out / "a.zip")
    assert sorted(merged) == ["a.csv", "old.txt"] and merged["old.txt"] == old["old.txt"]
    for cmd in (["unzip", "-tq"], ["7zz", "t"], ["bsdtar", "-tf"]):
        r = subprocess.run([*cmd, out / "a.zip"], capture_output=True, text=True)
        assert r.returncode == 0 and "warning" not in r.stdout + r.stderr, (cmd, r.stdout, r.stderr)
    assert_nothing_lost(snap, out)


# --- sources changed between the plan and the run -------------------------------------------------

@pytest.mark.parametrize(("how", "workers"), [("fifo", 1), ("fifo", 2), ("folder", 2),
                                              ("truncated, mtime put back", 1),
                                              ("truncated, mtime put back", 2)])
def test_a_source_changed_between_plan_and_run_fails_its_stem_only(tmp_path: Path, how: str,
                                                                   workers: int) -> None:
    """After plan(): a.dat becomes a FIFO (opening it must not hang), a folder, or is cut short
    with its mtime put back. Stem a fails naming the file and keeps every source, into an
    existing archive too; stem b is done."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a" * 5000)
    write(src / "a.log", b"log of a\n")
    write(src / "b.dat", b"b\n")
    _stored_archive(out / "a.zip", {"earlier.txt": b"archived by an earlier run\n"})
    before = _sha(out / "a.zip")
    p = zipkit.plan(src, ["dat", "log"], out, delete_sources=True, timeout=30)
    target = src / "a.dat"
    st = target.stat()
    if how == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif how == "folder":
        target.unlink()
        target.mkdir()
    else:
        os.truncate(target, 10)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    snap = snapshot(src)
    rep = zipkit.run_plan(p, workers=workers, progress=False)
    a = rep["a"]
    assert a.status == "failed" and a.error_type == "SourceChangedError", (a.status, a.message)
    assert str(target) in a.message, a.message
    assert rep["b"].status == "ok" and not (src / "b.dat").exists()
    assert (src / "a.log").is_file() and _sha(out / "a.zip") == before
    assert_nothing_lost(snap, out)


# --- the plan says what the run will do ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["deflate64 (7-Zip)", "encrypted (zip -P)"])
def test_the_plan_says_a_member_that_cannot_be_carried_fails_the_stem(tmp_path: Path, kind: str) -> None:
    """A member zipkit cannot check (Deflate64, encrypted) fails the merge: the plan (--dry-run,
    Preview) says so up front instead of promising "merge: 1 member kept"; replace, which
    carries nothing, is planned as usual."""
    src, out, work = tmp_path / "src", tmp_path / "out", tmp_path / "w"
    write(work / "old.bin", bytes(100_000))
    out.mkdir()
    if kind.startswith("deflate64"):
        cmd = ["7zz", "a", "-tzip", "-mm=Deflate64", out / "a.zip", "old.bin"]
    else:
        cmd = ["zip", "-q", "-P", "secret", out / "a.zip", "old.bin"]
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    before = _sha(out / "a.zip")
    write(src / "a.csv", b"new\n")
    write(src / "b.csv", b"b\n")
    a = next(s for s in zipkit.plan(src, "csv", out).stems if s.stem == "a")
    assert a.action == "fail" and "'old.bin'" in a.reason and str(out / "a.zip") in a.reason, a
    r = _cli(src, "--ext", "csv", "-o", out, "--dry-run")
    assert "fail" in r.stdout and "old.bin" in r.stdout and "Traceback" not in r.stderr, r.stdout
    assert next(s for s in zipkit.plan(src, "csv", out, overwrite="replace").stems
                if s.stem == "a").action == "replace"
    snap = snapshot(src)
    r = _cli(src, "--ext", "csv", "-o", out, "--delete-sources", "--no-progress")
    assert r.returncode == 1 and "old.bin" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _sha(out / "a.zip") == before and (src / "a.csv").is_file() and not (src / "b.csv").exists()
    assert member_hashes(out / "b.zip")["b.csv"] == snap[src / "b.csv"].sha256
    assert_nothing_lost({p: s for p, s in snap.items() if p.name == "a.csv"})  # a.zip: unreadable here


def test_update_with_verify_on_an_up_to_date_encrypted_archive_gives_no_traceback(tmp_path: Path) -> None:
    """--overwrite update --verify tests an up-to-date archive's CRCs at plan time; an encrypted
    member made zipfile raise RuntimeError there, a traceback for the user. It is now taken
    as unverifiable: the archive is rebuilt from this run's file (same name, so replaced)."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.csv", b"data\n")
    out.mkdir()
    subprocess.run(["zip", "-q", "-P", "pw", out / "a.zip", "a.csv"], cwd=src, check=True)
    later = (src / "a.csv").stat().st_mtime + 3600
    os.utime(out / "a.zip", (later, later))
    snap = snapshot(src)
    r = _cli(src, "--ext", "csv", "-o", out, "--overwrite", "update", "--verify", "--no-progress",
             "--delete-sources")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert_nothing_lost(snap, out)
