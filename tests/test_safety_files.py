"""Fault injection, files: full disks, unreadable / vanished / changing sources, corrupt archives,
reproducibility, output folder = source folder, unsafe stem names, symlinks.

Each case snapshots the sources, runs zipkit for real and asserts the nothing-lost invariant and
that the report tells the truth (see ``safety_helpers``).
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
from safety_helpers import (
    assert_nothing_lost,
    assert_report_truthful,
    assert_unreadable,
    member_hashes,
    sha256_file,
    small_filesystem,
    snapshot,
    subprocess_env,
    temp_files,
    text_bytes,
    wait_until,
    without_dac_override,
    write,
    zipkit_cmd,
)

import zipkit

pytestmark = pytest.mark.timeout(120)


def _stems(src: Path, names: list[str], size: int = 100_000, logs: bool = True) -> None:
    for i, n in enumerate(names):
        write(src / f"{n}.dat", text_bytes(size, i))
        if logs:
            write(src / f"{n}.log", os.urandom(2000 + i))


def _archive_shas(folder: Path) -> dict[str, str]:
    return {z.name: sha256_file(z) for z in sorted(folder.glob("*.zip"))}


# --- disk full ---------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("delete_sources", [False, True])
def test_disk_full_fails_the_stem_cleanly(tmp_path: Path, delete_sources: bool, workers: int) -> None:
    """The output folder is a 1 MiB file system; one stem needs 1.5 MiB (incompressible)."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "big.dat", os.urandom(1536 << 10))
    for i in range(3):
        write(src / f"s{i}.dat", os.urandom(60_000))
    snap = snapshot(src)
    with small_filesystem(out, 1024):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=workers, delete_sources=delete_sources,
                                      progress=False)
        big = rep["big"]
        assert big.status == "failed" and "No space left on device" in big.message, (big.status, big.message)
        for r in rep.failed:  # with two workers a small stem may hit the full disk too: same error
            assert "No space left on device" in r.message, r.message
        if workers == 1:
            assert [r.stem for r in rep.failed] == ["big"]
        assert not temp_files(out)
        assert_nothing_lost(snap, out)
        assert_report_truthful(rep, snap, src, out)
        if delete_sources:
            assert all(r.deleted == r.files for r in rep.ok)
        fs = os.statvfs(out)
        assert fs.f_bfree * fs.f_frsize > 600_000, "the failed stem's space was not freed"


@pytest.mark.parametrize("workers", [1, 2])
def test_disk_full_in_a_small_stem_written_at_once(tmp_path: Path, workers: int) -> None:
    """Stems under 1 MiB are written in one call: on a full disk that call fails, nothing is left."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(3):
        write(src / f"m{i}.dat", os.urandom(600_000))  # incompressible; two do not fit in 1 MiB
    snap = snapshot(src)
    with small_filesystem(out, 1024):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=workers, delete_sources=True,
                                      progress=False)
        assert len(rep.ok) == 1 and len(rep.failed) == 2, rep.summary_line()
        for r in rep.failed:
            assert "No space left on device" in r.message, r.message
            assert all((src / f).exists() for f in r.files)
        assert rep.ok[0].deleted == rep.ok[0].files
        assert not temp_files(out)
        assert_nothing_lost(snap, out)
        assert_report_truthful(rep, snap, src, out)


def test_writes_failing_at_a_byte_count(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: every write past 1 MiB fails (EFBIG), on any machine, root or not."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "big.dat", os.urandom(3 << 20))
    for i in range(3):
        write(src / f"s{i}.dat", os.urandom(100_000))
    snap = snapshot(src)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cmd = zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", "2", "--delete-sources", "--no-progress")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(),
                       preexec_fn=limit_file_size, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: big:" in r.stderr and "File too large" in r.stderr, r.stderr
    assert (src / "big.dat").is_file() and not (out / "big.zip").exists()
    assert not list(src.glob("s*.dat")), "the other stems' sources were not deleted"
    where = assert_nothing_lost(snap, out)
    assert where[src / "big.dat"] == "source"


# --- unreadable, vanished, changing sources ----------------------------------------------------

def test_acceptance_delete_sources_with_one_unreadable_file(tmp_path: Path) -> None:
    """``zipkit SRC --ext dat --delete-sources`` with one unreadable file: the other stems' sources
    are deleted, the failing stem keeps every byte, exit 1 naming that stem."""
    src = tmp_path / "src"
    _stems(src, ["alpha", "bravo", "charlie"], logs=False)
    snap = snapshot(src)
    (src / "bravo.dat").chmod(0)
    prefix = without_dac_override()
    assert_unreadable(src / "bravo.dat", prefix)
    r = subprocess.run([*prefix, *zipkit_cmd(src, "--ext", "dat", "--delete-sources")],
                       capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(), timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    failures = [line for line in r.stderr.splitlines() if line.startswith("zipkit: failed: ")]
    assert len(failures) == 1 and failures[0].startswith("zipkit: failed: bravo: "), r.stderr
    assert "Permission denied" in failures[0] and "bravo.dat" in failures[0], failures
    assert sorted(p.name for p in src.iterdir()) == ["alpha.zip", "bravo.dat", "charlie.zip"]
    where = assert_nothing_lost(snap, src)
    assert where[src / "bravo.dat"] == "source"
    assert where[src / "alpha.dat"] == str(src / "alpha.zip")
    assert where[src / "charlie.dat"] == str(src / "charlie.zip")


def test_unreadable_file_in_a_multi_file_stem_keeps_the_whole_stem(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a", "b", "c", "d"])
    snap = snapshot(src)
    (src / "b.log").chmod(0)
    prefix = without_dac_override()
    assert_unreadable(src / "b.log", prefix)
    r = subprocess.run([*prefix, *zipkit_cmd(src, "--ext", "dat", "--ext", "log", "-o", out, "-j", "2",
                                             "--delete-sources", "--no-progress")],
                       capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(), timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: b:" in r.stderr and "b.log" in r.stderr, r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["b.dat", "b.log"]
    assert sorted(p.name for p in out.iterdir()) == ["a.zip", "c.zip", "d.zip"]
    assert_nothing_lost(snap, out)


@pytest.mark.parametrize("workers", [1, 2])
def test_source_deleted_after_planning(tmp_path: Path, workers: int) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a", "b", "c"])
    snap = snapshot(src)
    p = zipkit.plan(src, ["dat", "log"], out, delete_sources=True)
    (src / "b.log").unlink()
    rep = zipkit.run_plan(p, workers=workers, progress=False)
    b = rep["b"]
    assert b.status == "failed" and "No such file" in b.message and "b.log" in b.message, b.message
    assert (src / "b.dat").is_file() and not (out / "b.zip").exists()
    assert [r.stem for r in rep.ok] == ["a", "c"]
    assert_nothing_lost(snap, out, removed_by_test=[src / "b.log"])
    assert_report_truthful(rep, snap, src, out, removed_by_test=[src / "b.log"])


@pytest.mark.parametrize(("change", "workers"), [("append", 1), ("append", 2), ("touch", 2)])
def test_source_changing_while_read(tmp_path: Path, change: str, workers: int) -> None:
    """A file still being written (appended to) or touched while zipkit reads it fails its stem."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "g.dat", text_bytes(16 << 20, 7))
    write(src / "g.log", b"log of g\n" * 100)
    _stems(src, ["s0", "s1", "s2"])
    snap = snapshot(src)
    target = src / "g.dat"
    stop, changed = threading.Event(), threading.Event()

    def mutate() -> None:
        try:
            wait_until(lambda: temp_files(out) or stop.is_set(), 60, "g's archive to be started")
        except AssertionError:
            return
        n = 0
        while not stop.is_set():
            n += 1
            if change == "append":
                with open(target, "ab") as f:
                    f.write(b"one more line\n")
            else:
                st = target.stat()
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
            changed.set()
            time.sleep(0.005)

    t = threading.Thread(target=mutate)
    t.start()
    try:
        rep = zipkit.zip_by_extension(src, ["dat", "log"], out, workers=workers, delete_sources=True,
                                      progress=False, deflate_backend="zlib", level=9)
    finally:
        stop.set()
        t.join()
    assert changed.is_set()
    g = rep["g"]
    assert g.status == "failed" and g.error_type == "SourceChangedError", (g.status, g.message)
    assert ("g.dat changed while it was read" in g.message
            or "g.dat changed since the plan saw it" in g.message), g.message
    assert [r.stem for r in rep.failed] == ["g"]
    grown = [target] if change == "append" else []
    assert_nothing_lost(snap, out, grown=grown)
    assert_report_truthful(rep, snap, src, out, grown=grown)


# --- overwrite="update" ------------------------------------------------------------------------

def _damage(archive: Path, how: str) -> None:
    data = bytearray(archive.read_bytes())
    if how == "garbage":
        archive.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    else:  # flip one byte in the middle of the first member's data; the directory stays intact
        with zipfile.ZipFile(archive) as zf:
            info = zf.infolist()[0]
        name_len = int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little")
        extra_len = int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
        at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
        data[at] ^= 0xFF
        archive.write_bytes(bytes(data))


@pytest.mark.parametrize("policy", ["always", "update", "never", "replace"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_existing_archive_is_kept_and_its_stem_fails(tmp_path: Path, damage: str,
                                                                    policy: str) -> None:
    """A file at STEM.zip that is not a readable zip is never replaced, under any policy: the
    stem fails naming it, the file keeps its bytes, and no source of that stem is deleted."""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a", "b"], size=300_000)
    assert zipkit.zip_by_extension(src, ["dat", "log"], out, progress=False).success
    _damage(out / "a.zip", damage)
    damaged = sha256_file(out / "a.zip")
    write(src / "b.log", os.urandom(3000))  # b changed too: rewritten unless policy is never
    snap = snapshot(src)
    b_before = sha256_file(out / "b.zip")
    rep = zipkit.zip_by_extension(src, ["dat", "log"], out, overwrite=policy, delete_sources=True,
                                  progress=False)
    a = rep["a"]
    assert a.status == "failed" and a.error_type == "ExistingArchiveError", (a.status, a.message)
    assert str(out / "a.zip") in a.message and "not a readable zip" in a.message
    assert sha256_file(out / "a.zip") == damaged and (src / "a.dat").is_file()
    assert rep["b"].status == ("skipped" if policy == "never" else "ok")
    assert_report_truthful(rep, snap, src, out, preexisting={"a": damaged, "b": b_before})
    (out / "a.zip").rename(tmp_path / "a.zip.kept")  # the checker reads every *.zip in out
    assert_nothing_lost(snap, out)


@pytest.mark.parametrize("policy", ["always", "update"])
def test_a_bad_crc_in_a_carried_member_fails_the_stem_and_keeps_everything(tmp_path: Path,
                                                                            policy: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a"], size=300_000)
    assert zipkit.zip_by_extension(src, ["dat"], out, progress=False, delete_sources=True).success
    _damage(out / "a.zip", "flipped-byte")  # a.dat's data; the directory stays intact
    damaged = sha256_file(out / "a.zip")
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, ["log"], out, overwrite=policy, delete_sources=True,
                                  progress=False)
    a = rep["a"]
    assert a.status == "failed" and a.error_type == "ExistingArchiveError", (a.status, a.message)
    assert "'a.dat'" in a.message and "CRC" in a.message and str(out / "a.zip") in a.message
    assert sha256_file(out / "a.zip") == damaged and (src / "a.log").is_file()
    assert_report_truthful(rep, snap, src, out, preexisting={"a": damaged})
    assert temp_files(out) == []


def test_update_rebuilds_an_archive_whose_replaced_member_is_corrupt(tmp_path: Path) -> None:
    """Looks up to date, but a CRC fails in a member this run replaces: not skipped (verify
    is on with ``delete_sources``): merged, the bad member replaced by its source."""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a", "b"], size=300_000)
    assert zipkit.zip_by_extension(src, ["dat", "log"], out, progress=False).success
    _damage(out / "a.zip", "flipped-byte")
    future = time.time() + 3600
    for z in out.glob("*.zip"):
        os.utime(z, (future, future))
    snap = snapshot(src)
    b_before = sha256_file(out / "b.zip")
    p = zipkit.plan(src, ["dat", "log"], out, overwrite="update", delete_sources=True)
    actions = {s.stem: (s.action, s.reason) for s in p.stems}
    assert actions["a"][0] == "merge" and "bad CRC" in actions["a"][1], actions
    assert actions["b"] == ("skip", "up to date"), actions
    rep = zipkit.run_plan(p, progress=False)
    assert rep["a"].status == "ok" and rep["b"].status == "skipped"
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out, preexisting={"b": b_before})
    assert sha256_file(out / "b.zip") == b_before


def test_update_second_run_does_no_work(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["a", "b", "c"])
    snap = snapshot(src)
    first = zipkit.zip_by_extension(src, ["dat", "log"], out, overwrite="update", progress=False)
    assert len(first.ok) == 3
    before = {z.name: (z.stat().st_mtime_ns, sha256_file(z)) for z in out.glob("*.zip")}
    second = zipkit.zip_by_extension(src, ["dat", "log"], out, overwrite="update", progress=False)
    assert not second.ok and len(second.skipped) == 3
    assert all(r.message == "up to date" for r in second.skipped)
    assert "3 skipped" in second.summary_line()
    assert {z.name: (z.stat().st_mtime_ns, sha256_file(z)) for z in out.glob("*.zip")} == before
    assert_nothing_lost(snap, out)
    assert_report_truthful(second, snap, src, out)


# --- reproducible ------------------------------------------------------------------------------

def test_reproducible_archives_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _stems(src, ["a", "b", "c", "d"], size=150_000)
    write(src / "e.dat", text_bytes(3 << 20, 9))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)

    def run(out: str, workers: int) -> dict[str, str]:
        rep = zipkit.zip_by_extension(src, ["dat", "log"], tmp_path / out, reproducible=True,
                                      workers=workers, progress=False)
        assert rep.success and len(rep.ok) == 5
        assert rep.executor == ("in-process" if workers == 1 else "process pool")
        return _archive_shas(tmp_path / out)

    one = run("one", 1)
    for f in src.iterdir():  # what must not leak into the archives: mtimes and permissions
        os.utime(f, (1_000_000_000, 1_000_000_000))
        f.chmod(0o600)
    two = run("two", 2)
    assert one == two
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    three, four = run("three", 2), run("four", 1)
    assert three == four and three != one
    with zipfile.ZipFile(tmp_path / "three" / "a.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {time.gmtime(1_700_000_000)[:6]}


# --- output folder = source folder -------------------------------------------------------------

@pytest.mark.parametrize("delete_sources", [False, True])
@pytest.mark.parametrize("markers", [False, True])
def test_output_folder_is_the_source_folder(tmp_path: Path, delete_sources: bool, markers: bool) -> None:
    """Archives never become inputs: with ``zip`` among the extensions, the second run, whose
    a.zip would be both a source and the archive of stem a, is refused before any work."""
    src = tmp_path / "src"
    _stems(src, ["a", "b", "c"])
    snap = snapshot(src)
    exts = ["dat", "log", "zip"]
    stems = ["a", "b", "c"] if markers else None
    rep = zipkit.zip_by_extension(src, exts, stems=stems, delete_sources=delete_sources,
                                  workers=2, progress=False)
    assert rep.output == src and len(rep.ok) == 3, rep.summary_line()
    for s in "abc":
        assert sorted(member_hashes(src / f"{s}.zip")) == [f"{s}.dat", f"{s}.log"]
    assert_nothing_lost(snap, src)
    before = snapshot(src)
    with pytest.raises(zipkit.UsageError) as e:
        zipkit.zip_by_extension(src, exts, stems=stems, delete_sources=delete_sources,
                                workers=2, progress=False)
    assert f"{src / 'a.zip'}" in str(e.value) and "source of stem 'a'" in str(e.value)
    assert snapshot(src) == before
    r = subprocess.run(zipkit_cmd(src, *(f"--ext={x}" for x in exts)), capture_output=True,
                       text=True, env=subprocess_env(), timeout=60)
    assert r.returncode == 2 and "a.zip" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert snapshot(src) == before


# --- stem names that would escape --------------------------------------------------------------

@pytest.mark.parametrize("stem", ["../x", "/abs", "a/b", "a\\b", "x\0y", "..", ".", ""])
def test_unsafe_stem_names_are_refused(tmp_path: Path, stem: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["x", "a"], logs=False)
    write(src / "abs.dat", b"abs")
    snap = snapshot(src)
    for call in (zipkit.plan, zipkit.zip_by_extension):
        with pytest.raises(zipkit.UnsafeStemError) as caught:
            call(src, "dat", out, stems=["x", stem])
        assert caught.value.stem == stem and repr(stem) in str(caught.value)
        assert isinstance(caught.value, zipkit.UsageError)
    assert not out.exists()
    assert not list(tmp_path.rglob("*.zip")) and not list(Path("/").glob("abs.zip"))
    assert snapshot(src) == snap


def test_unsafe_stem_on_the_command_line_exits_2(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, ["x"], logs=False)
    r = subprocess.run(zipkit_cmd(src, "--ext", "dat", "-o", out, "--stems", "../x"), capture_output=True,
                       text=True, cwd=tmp_path, env=subprocess_env(), timeout=60)
    assert r.returncode == 2 and "'../x'" in r.stderr and "escape" in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "x.zip").exists()


def test_an_own_stem_that_would_escape_is_ignored_and_reported(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "...dat", b"stem '..'")
    _stems(src, ["ok"], logs=False)
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, "dat", out, delete_sources=True, progress=False)
    assert [r.stem for r in rep.results] == ["ok"]
    assert any(p.name == "...dat" and "escape" in why for p, why in rep.ignored), rep.ignored
    assert (src / "...dat").is_file() and sorted(p.name for p in out.iterdir()) == ["ok.zip"]
    assert_nothing_lost(snap, out)


# --- symlinks ----------------------------------------------------------------------------------

def test_symlink_policy(tmp_path: Path) -> None:
    """Links to regular files inside the source folder are followed (and only the link is
    deleted); links leaving it, to folders, dangling or looping are ignored and reported."""
    src, out, outside = tmp_path / "src", tmp_path / "out", tmp_path / "outside"
    write(src / "inner" / "real.bin", text_bytes(50_000, 3))
    write(outside / "far.bin", b"outside the source folder")
    write(src / "plain.dat", b"a plain file")
    (src / "inside.dat").symlink_to("inner/real.bin")
    (src / "leaving.dat").symlink_to(outside / "far.bin")
    (src / "folder.dat").symlink_to("inner", target_is_directory=True)
    (src / "dangling.dat").symlink_to("nowhere.bin")
    (src / "loop.dat").symlink_to("loop.dat")
    snap = snapshot(src, outside, recursive=True)
    rep = zipkit.zip_by_extension(src, "dat", out, delete_sources=True, progress=False)
    assert sorted(r.stem for r in rep.ok) == ["inside", "plain"] and len(rep.results) == 2
    reasons = {p.name: why for p, why in rep.ignored}
    assert set(reasons) == {"leaving.dat", "folder.dat", "dangling.dat", "loop.dat"}, reasons
    assert "outside the source folder" in reasons["leaving.dat"]
    assert all("not a regular file" in reasons[n] for n in ("folder.dat", "dangling.dat", "loop.dat"))
    expected = hashlib.sha256(text_bytes(50_000, 3)).hexdigest()
    assert member_hashes(out / "inside.zip") == {"inside.dat": expected}
    assert not os.path.lexists(src / "inside.dat"), "the link was not deleted"
    assert (src / "inner" / "real.bin").is_file(), "deleting a link deleted its target"
    assert (outside / "far.bin").is_file() and os.path.islink(src / "leaving.dat")
    assert all(os.path.islink(src / n) for n in reasons)
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
