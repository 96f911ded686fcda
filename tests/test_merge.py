"""An existing archive is data too: re-runs merge as Info-ZIP zip does, and never lose a member.

Also: sources are read as the plan saw them (identity, real concurrent writers), and inputs are
never outputs (archives, error reports). Names the file system cannot hold: test_names.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_helpers import (
    assert_nothing_lost,
    assert_report_truthful,
    member_hashes,
    snapshot,
    subprocess_env,
    temp_files,
    write,
    zipkit_cmd,
)

import zipkit
import zipkit._config
from zipkit import plan, zip_by_extension
from zipkit._archive import write_archive
from zipkit._tempfiles import RunTemps

POLICIES = ["always", "update", "never", "replace"]


def _cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(zipkit_cmd(*args), capture_output=True, text=True, env=subprocess_env(),
                          timeout=120, cwd=cwd)


def _raw_members(archive: Path) -> dict[str, tuple]:
    """Each member's stored bytes, CRC, method, time, attributes and extra fields."""
    out = {}
    data = archive.read_bytes()
    with zipfile.ZipFile(archive) as zf:
        for i in zf.infolist():
            n, e = (int.from_bytes(data[i.header_offset + k: i.header_offset + k + 2], "little")
                    for k in (26, 28))
            start = i.header_offset + 30 + n
            local_extra = data[start: start + e]
            raw = data[start + e: start + e + i.compress_size]
            out[i.filename] = (raw, i.CRC, i.compress_type, i.date_time, i.external_attr, i.extra,
                               local_extra)
    return out


def _third_party_readers(archive: Path, unzip: bool = True) -> None:
    """unzip -t, 7zz t and bsdtar -tf accept ``archive`` (this unzip has no LZMA: ``unzip``)."""
    cmds = [["7zz", "t", str(archive)], ["bsdtar", "-tf", str(archive)]]
    for cmd in [["unzip", "-t", str(archive)]] * unzip + cmds:
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])


# --- the merge rule ----------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("policy", POLICIES)
def test_a_rerun_after_delete_sources_keeps_what_the_first_run_archived(tmp_path: Path, policy: str,
                                                                       workers: int) -> None:
    """issue 12's first case: case1.dat + case1.log archived and deleted; a new case1.dat, run
    with --ext dat only: the archived case1.log stays (always/update merge, never skips),
    except under replace, which drops it by name and says so."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "case1.dat", b"first dat\n" * 1000)
    write(src / "case1.log", b"the only copy of the log\n" * 500)
    write(src / "case2.dat", b"case 2\n" * 100)
    write(src / "case2.log", b"log 2\n" * 100)
    first_snap = snapshot(src)
    first = zip_by_extension(src, ["dat", "log"], out, delete_sources=True, progress=False, workers=workers)
    assert first.success and not list(src.iterdir())
    write(src / "case1.dat", b"second dat\n" * 1000)
    write(src / "case2.dat", b"case 2 again\n" * 100)
    snap = snapshot(src)
    p = plan(src, ["dat"], out, overwrite=policy, delete_sources=True)
    text = str(p)
    if policy == "replace":
        assert "replace: 1 member dropped" in text
        assert [s.dropped for s in p.stems] == [("case1.log",), ("case2.log",)]
    elif policy == "never":
        assert [s.action for s in p.stems] == ["skip", "skip"]
    else:
        assert "merge: 1 member kept" in text
        assert [s.kept for s in p.stems] == [("case1.log",), ("case2.log",)]
    rep = zipkit.run_plan(p, progress=False, workers=workers)
    assert rep.success, rep
    recs = {r["stem"]: r for r in rep.to_records()}
    if policy == "never":
        assert_nothing_lost({**first_snap, **snap}, out)
        return
    for stem in ("case1", "case2"):
        names = sorted(member_hashes(out / f"{stem}.zip"))
        if policy == "replace":
            assert names == [f"{stem}.dat"] and recs[stem]["dropped"] == [f"{stem}.log"]
            assert recs[stem]["carried"] == 0
        else:
            assert names == [f"{stem}.dat", f"{stem}.log"] and recs[stem]["carried"] == 1
        _third_party_readers(out / f"{stem}.zip")
    if policy == "replace":
        assert "case1: replace dropped 1 member(s): case1.log" in str(rep)
        removed = {p for p in first_snap if p.suffix == ".log"} | {src / "case1.dat", src / "case2.dat"}
        assert_nothing_lost({**first_snap, **snap}, out, removed_by_test=removed - set(snap))
    else:
        assert "merge: 1 member(s) kept" in str(rep)
        # the logs of the first run and the new .dat files are all in the archives now
        assert_nothing_lost({**{p: s for p, s in first_snap.items() if p.suffix == ".log"}, **snap}, out)
    assert_report_truthful(rep, snap, src, out)


def test_members_dropped_by_replace_are_said_even_when_quiet(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    out.mkdir()
    with zipfile.ZipFile(out / "a.zip", "w") as zf:
        zf.writestr("a.log", "old")
        zf.writestr("a.sim", "old")
    r = _cli(src, "--ext", "dat", "-o", out, "--overwrite", "replace", "-q")
    assert r.returncode == 0, r.stderr
    assert f"replace: {out / 'a.zip'} no longer holds 2 member(s): a.log, a.sim" in r.stderr
    assert len(r.stdout.splitlines()) == 1 and sorted(member_hashes(out / "a.zip")) == ["a.dat"]


def test_carried_members_keep_their_stored_bytes_and_headers_from_info_zip(tmp_path: Path) -> None:
    """An archive made by Info-ZIP zip (UT and ux extra fields, its own deflate, a stored
    member): the members this run does not replace are copied byte for byte, not recompressed,
    with their times, attributes and both headers' extra fields; readers accept the result."""
    src, out = tmp_path / "src", tmp_path / "out"
    work = tmp_path / "work"
    write(work / "run1.log", b"log line with words\n" * 5000)
    write(work / "run1.sim", os.urandom(3000))
    write(work / "run1.dat", b"old dat\n" * 100)
    os.utime(work / "run1.log", (1_600_000_000, 1_600_000_000))
    out.mkdir()
    r = subprocess.run(["zip", "-q", "-X-", str(out / "run1.zip"), "run1.log", "run1.sim", "run1.dat"],
                       cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before = _raw_members(out / "run1.zip")
    assert b"UT" in before["run1.log"][6] and b"ux" in before["run1.log"][6]  # made by zip: extras
    write(src / "run1.dat", b"new dat\n" * 100)
    rep = zip_by_extension(src, "dat", out, progress=False, verify=True)
    assert rep["run1"].status == "ok" and rep["run1"].carried == 2
    after = _raw_members(out / "run1.zip")
    assert sorted(after) == ["run1.dat", "run1.log", "run1.sim"]
    assert after["run1.log"] == before["run1.log"] and after["run1.sim"] == before["run1.sim"]
    assert after["run1.dat"][0] != before["run1.dat"][0]
    with zipfile.ZipFile(out / "run1.zip") as zf:
        assert zf.read("run1.dat") == b"new dat\n" * 100
        assert [i.filename for i in zf.infolist()] == ["run1.dat", "run1.log", "run1.sim"]  # sorted
    _third_party_readers(out / "run1.zip")
    x = tmp_path / "x"
    subprocess.run(["unzip", "-q", str(out / "run1.zip"), "-d", str(x)], check=True)
    assert os.stat(x / "run1.log").st_mtime == 1_600_000_000  # from the UT field zip wrote


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA,
                                    zipfile.ZIP_DEFLATED])
def test_members_of_every_method_are_carried_and_checked(tmp_path: Path, method: int) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    payload = b"".join(b"%d compressible line\n" % i for i in range(200_000))  # ~4.5 MB, many chunks
    with zipfile.ZipFile(out / "a.zip", "w", compression=method) as zf:
        zf.writestr("a.big", payload)
        zf.writestr("sub/dir.txt", b"a member in a folder")
    write(src / "a.dat", b"dat")
    rep = zip_by_extension(src, "dat", out, progress=False, verify=True)
    assert rep["a"].status == "ok" and rep["a"].carried == 2, rep["a"].message
    with zipfile.ZipFile(out / "a.zip") as zf:
        assert zf.read("a.big") == payload and zf.getinfo("a.big").compress_type == method
        assert zf.read("sub/dir.txt") == b"a member in a folder"
    _third_party_readers(out / "a.zip", unzip=method != zipfile.ZIP_LZMA)


def test_zip64_by_count_carries_over(tmp_path: Path) -> None:
    """An existing archive of more than 65,535 members (ZIP64 end records): merged, one new
    member, all readable by zipfile, unzip, 7-Zip and bsdtar."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    n = 70_000
    with zipfile.ZipFile(out / "many.zip", "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"many_{i:05d}.txt", b"%d" % i)
    write(src / "many.dat", b"the new member")
    rep = zip_by_extension(src, "dat", out, progress=False, verify=True)
    assert rep["many"].status == "ok" and rep["many"].carried == n, rep["many"].message
    with zipfile.ZipFile(out / "many.zip") as zf:
        infos = zf.infolist()
        assert len(infos) == n + 1 and zf.read("many_69999.txt") == b"69999"
        assert zf.read("many.dat") == b"the new member"
    _third_party_readers(out / "many.zip")


def test_a_zip64_member_header_is_rewritten_for_its_new_place(tmp_path: Path) -> None:
    """A member written with a zip64 extra (zipfile's force_zip64) carries over; the stale zip64
    field is replaced, so strict readers accept the merged archive."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(out / "z.zip", "w") as zf:
        with zf.open("z.log", "w", force_zip64=True) as m:
            m.write(b"zip64 member\n" * 1000)
    write(src / "z.dat", b"new")
    rep = zip_by_extension(src, "dat", out, progress=False, verify=True)
    assert rep["z"].status == "ok" and rep["z"].carried == 1
    with zipfile.ZipFile(out / "z.zip") as zf:
        assert zf.read("z.log") == b"zip64 member\n" * 1000
    _third_party_readers(out / "z.zip")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("what", ["folder", "symlink", "dangling symlink", "empty file"])
def test_something_else_at_the_archive_path_is_never_replaced(tmp_path: Path, what: str,
                                                              policy: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    write(src / "b.dat", b"b")
    out.mkdir()
    private = write(tmp_path / "private.zip", b"private bytes")
    if what == "folder":
        write(out / "a.zip" / "inside.txt", b"inside")
    elif what == "symlink":
        (out / "a.zip").symlink_to(private)
    elif what == "dangling symlink":
        (out / "a.zip").symlink_to(tmp_path / "nowhere.zip")
    else:
        (out / "a.zip").write_bytes(b"")
    snap = snapshot(src)
    r = _cli(src, "--ext", "dat", "-o", out, "--overwrite", policy, "--delete-sources", "--no-progress")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and str(out / "a.zip") in r.stderr
    assert (src / "a.dat").read_bytes() == b"a" and not (src / "b.dat").exists()
    assert private.read_bytes() == b"private bytes"
    if what == "folder":
        assert (out / "a.zip" / "inside.txt").read_bytes() == b"inside"
    elif what != "empty file":
        assert os.path.islink(out / "a.zip")
    else:
        assert (out / "a.zip").read_bytes() == b""
    assert temp_files(out) == []
    assert sorted(member_hashes(out / "b.zip")) == ["b.dat"]
    del snap


def test_an_archive_rewritten_by_another_job_during_the_merge_is_kept(tmp_path: Path) -> None:
    """Another writer replaces STEM.zip after zipkit read it: zipkit would drop that writer's
    members, so the stem fails and the other archive stays."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a" * 10)
    out.mkdir()
    with zipfile.ZipFile(out / "a.zip", "w") as zf:
        zf.writestr("old.txt", "old")
    p = plan(src, "dat", out)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("theirs.txt", "written by another job")

    def swap(n: int) -> None:  # a real rename by another "job", once this stem has been read
        if not os.path.exists(other):
            return
        os.replace(other, out / "a.zip")

    res = write_archive(p.stems[0], p.options, run_id="t", on_bytes=swap)
    assert res.status == "failed" and res.error_type == "ExistingArchiveError", res.message
    assert "changed while it was being merged" in res.message
    assert sorted(member_hashes(out / "a.zip")) == ["theirs.txt"]
    assert [t for t in temp_files(out) if t.is_file()] == []  # (the run removes its temp folder)


def test_an_archive_that_appears_after_planning_is_merged_not_overwritten(tmp_path: Path) -> None:
    """Planned as "create"; before the run another job (or an earlier attempt of this stem, as
    Dask may run a task twice) puts STEM.zip there: its members are carried over."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    p = plan(src, "dat", out)
    assert p.stems[0].action == "create"
    out.mkdir()
    with zipfile.ZipFile(out / "a.zip", "w") as zf:
        zf.writestr("other.txt", "another job's member")
    rep = zipkit.run_plan(p, progress=False)
    assert rep["a"].status == "ok" and rep["a"].carried == 1
    assert sorted(member_hashes(out / "a.zip")) == ["a.dat", "other.txt"]
    again = zipkit.run_plan(p, progress=False)  # the same stem run again: nothing doubled
    assert again["a"].status == "ok" and sorted(member_hashes(out / "a.zip")) == ["a.dat", "other.txt"]


def test_two_jobs_with_different_extensions_into_one_folder_lose_nothing(tmp_path: Path) -> None:
    """Job B (``--ext dat``) is reading when job A (``--ext log``, a real process) puts a.zip in
    place: B does not write over it (its stem fails, its sources kept); B run again merges."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"dat of job B")
    write(src / "a.log", b"log of job A")
    snap = snapshot(src)
    p = plan(src, "dat", out, delete_sources=True)
    out.mkdir()
    ran = []

    def job_a(n: int) -> None:  # while B reads: all of job A, in another process
        if not ran:
            ran.append(_cli(src, "--ext", "log", "-o", out, "--delete-sources", "--no-progress"))

    temps = RunTemps(out, "b")  # what run_plan does around its stems: B's temp area is live
    temps.open()
    try:
        b = write_archive(p.stems[0], p.options, run_id="b", on_bytes=job_a)
    finally:
        temps.close()  # the empty temp folder goes
    assert ran and ran[0].returncode == 0, ran[0].stderr
    assert b.status == "failed" and "appeared while stem 'a' was being archived" in b.message
    assert sorted(member_hashes(out / "a.zip")) == ["a.log"] and (src / "a.dat").is_file()
    again = zip_by_extension(src, "dat", out, delete_sources=True, progress=False)
    assert again["a"].status == "ok" and again["a"].carried == 1
    assert sorted(member_hashes(out / "a.zip")) == ["a.dat", "a.log"] and not list(src.iterdir())
    assert_nothing_lost(snap, out)


# --- identity: sources read as the plan saw them -----------------------------------------------

def _cp_p(source: Path, dest: Path) -> None:
    """A real writer that keeps mtimes (``cp -p``): same size, new content, mtime restored."""
    subprocess.run(["cp", "-p", str(source), str(dest)], check=True)


@pytest.mark.parametrize("writer", ["cp -p", "rename (rsync -t)"])
def test_a_source_rewritten_after_it_was_read_with_the_same_size_and_mtime_is_kept(
        tmp_path: Path, writer: str) -> None:
    """Between read and delete, a real process rewrites a.dat (same size, its mtime restored):
    the delete step sees a changed ctime (or inode): the stem fails, every source stays."""
    src, out = tmp_path / "src", tmp_path / "out"
    old = b"old content " * 1000
    new = b"NEW CONTENT " * 1000
    write(src / "a.dat", old)
    write(src / "a.log", b"log" * 100)
    staging = write(tmp_path / "staging" / "a.dat", new)
    st = os.stat(src / "a.dat")
    os.utime(staging, ns=(st.st_atime_ns, st.st_mtime_ns))
    p = plan(src, ["dat", "log"], out, delete_sources=True)
    out.mkdir()
    done = []

    def rewrite(n: int) -> None:  # called after bytes were read: a.dat (sorted first) is read
        if done:
            return
        done.append(1)
        if writer == "cp -p":
            _cp_p(staging, src / "a.dat")
        else:
            subprocess.run(["cp", "-p", str(staging), str(src / ".a.dat.partial")], check=True)
            os.replace(src / ".a.dat.partial", src / "a.dat")
        now = os.stat(src / "a.dat")
        assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)  # only ctime/inode tell

    res = write_archive(p.stems[0], p.options, run_id="t", on_bytes=rewrite)
    assert done
    assert res.status == "failed" and res.error_type == "SourceChangedError", res.message
    assert "a.dat changed after it was archived; no source of stem 'a' deleted" in res.message
    assert (src / "a.dat").read_bytes() == new and (src / "a.log").is_file()
    assert res.deleted == ()


def test_a_source_rewritten_by_a_concurrent_process_during_a_slow_stem_is_kept(tmp_path: Path) -> None:
    """The CLI, a real concurrent process: a.dat (read first) is rewritten with cp -p while the
    big b.dat of the same stem is still being compressed. The stem fails; nothing deleted."""
    src, out = tmp_path / "src", tmp_path / "out"
    from safety_helpers import text_bytes, wait_until

    write(src / "s.a.dat", b"small first " * 1000)
    write(src / "s.b.dat", text_bytes(48 << 20, 1))
    staging = write(tmp_path / "s.a.dat", b"SMALL FIRST " * 1000)
    st = os.stat(src / "s.a.dat")
    os.utime(staging, ns=(st.st_atime_ns, st.st_mtime_ns))
    snap = snapshot(src)
    proc = subprocess.Popen(zipkit_cmd(src, "--ext", "dat", "--stems", "s", "-o", out, "-l", "9",
                                       "--delete-sources", "--no-progress", "--overwrite", "always"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(ZIPKIT_DEFLATE_BACKEND="zlib"), start_new_session=True)
    # the temp archive has grown past s.a.dat's share: s.a.dat was read, s.b.dat is in flight
    wait_until(lambda: any(t.stat().st_size > 200_000 for t in temp_files(out)), 60,
               "the big member to be under way")
    _cp_p(staging, src / "s.a.dat")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    assert "s.a.dat changed" in stderr and "Traceback" not in stderr
    assert (src / "s.a.dat").read_bytes() == b"SMALL FIRST " * 1000 and (src / "s.b.dat").is_file()
    assert_nothing_lost({k: v for k, v in snap.items() if k.name != "s.a.dat"}, out)


def test_a_source_swapped_for_a_symlink_to_a_private_file_after_planning_fails(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"public")
    write(src / "a.log", b"log")
    secret = write(tmp_path / "private" / "secret.txt", b"TOP SECRET " * 10)
    secret.chmod(0o600)
    for workers in (1, 2):
        p = plan(src, ["dat", "log"], out / str(workers), delete_sources=True, stems=["a", "zz"])
        (src / "a.dat").unlink()
        (src / "a.dat").symlink_to(secret)
        if workers == 2:
            write(src / "zz.dat", b"keeps the pool busy")
        rep = zipkit.run_plan(p, progress=False, workers=workers)
        a = rep["a"]
        assert a.status == "failed" and a.error_type == "SourceChangedError", a.message
        assert "symbolic link" in a.message
        assert not (out / str(workers) / "a.zip").exists()
        for z in (out / str(workers)).glob("*.zip"):
            assert b"TOP SECRET" not in z.read_bytes()
        assert os.path.islink(src / "a.dat") and (src / "a.log").is_file()
        assert secret.read_bytes() == b"TOP SECRET " * 10
        (src / "a.dat").unlink()
        write(src / "a.dat", b"public")


def test_a_source_replaced_by_another_file_after_planning_fails(tmp_path: Path) -> None:
    """Same name, same size, mtime restored, another inode: not the file the plan saw."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"one")
    p = plan(src, "dat", out)
    st = os.stat(src / "a.dat")
    write(tmp_path / "b.dat", b"two")
    os.utime(tmp_path / "b.dat", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp_path / "b.dat", src / "a.dat")
    rep = zipkit.run_plan(p, progress=False)
    assert rep["a"].status == "failed" and "another file than the plan saw" in rep["a"].message
    assert (src / "a.dat").read_bytes() == b"two" and not (out / "a.zip").exists()


def test_a_planned_symlink_is_opened_as_its_resolved_target_and_only_the_link_deleted(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "inner" / "real.bin", b"real content")
    (src / "link.dat").symlink_to("inner/real.bin")
    p = plan(src, "dat", out, delete_sources=True)
    f = p.stems[0].files[0]
    assert f.target == (src / "inner" / "real.bin").resolve() and f.ino == os.stat(f.target).st_ino
    rep = zipkit.run_plan(p, progress=False)
    assert rep["link"].status == "ok" and rep["link"].deleted == ("link.dat",)
    assert (src / "inner" / "real.bin").read_bytes() == b"real content"
    with zipfile.ZipFile(out / "link.zip") as zf:
        assert zf.read("link.dat") == b"real content"


# --- inputs are never outputs ------------------------------------------------------------------

def test_an_archive_that_is_a_marker_is_refused(tmp_path: Path) -> None:
    src, markers = tmp_path / "src", tmp_path / "markers"
    write(src / "a_1.csv", b"csv")
    write(markers / "a.zip", b"my own marker, not an archive")
    r = _cli(src, "--ext", "csv", "--stems-from", markers, "--stem-ext", "zip", "-o", markers)
    assert r.returncode == 2 and str(markers / "a.zip") in r.stderr and "Traceback" not in r.stderr
    assert (markers / "a.zip").read_bytes() == b"my own marker, not an archive"


def test_an_archive_that_is_the_config_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "cfg.csv", b"csv")
    cfg = tmp_path / "cfg.zip.yml"
    text = (f"analysis:\n  input_directory: {data}\n  filename:\n    extension: [csv]\n"
            f"file_management:\n  output_directory: {tmp_path}\n")
    cfg.write_text(text)
    # the archive of stem "cfg" would be tmp_path/cfg.zip: not the config, so that is allowed;
    # an error report at the config's path is not
    r = _cli(cfg, "--error-report", cfg)
    assert r.returncode == 2 and str(cfg) in r.stderr and "never an output" in r.stderr, r.stderr
    assert cfg.read_text() == text


@pytest.mark.parametrize("case", ["a source", "an archive", "a folder", "not a report", "no folder",
                                  "a file as folder", "unwritable"])
def test_bad_error_report_paths_exit_2_before_any_work(tmp_path: Path, case: str) -> None:
    from safety_helpers import without_dac_override

    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    write(src / "b.dat", b"b")
    prefix: list[str] = []
    if case == "a source":
        path = src / "b.dat"
    elif case == "an archive":
        path = out / "a.zip"
    elif case == "a folder":
        path = tmp_path
    elif case == "not a report":
        path = write(tmp_path / "notes.json", b'{"mine": true}')
    elif case == "no folder":
        path = tmp_path / "missing" / "deeper" / "r.json"  # made: allowed
    elif case == "a file as folder":
        path = src / "a.dat" / "r.json"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        path = locked / "r.json"
        prefix = without_dac_override()
    snap = snapshot(src)
    r = subprocess.run([*prefix, *zipkit_cmd(src, "--ext", "dat", "-o", out, "--error-report", path,
                                             "--delete-sources")],
                       capture_output=True, text=True, env=subprocess_env(), timeout=60)
    if case == "no folder":
        assert r.returncode == 0 and not path.exists(), r.stderr
        return
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(path) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and snapshot(src) == snap
    if case == "not a report":
        assert path.read_bytes() == b'{"mine": true}'


def test_an_earlier_error_report_is_replaced(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    out.mkdir()
    (out / "a.zip").write_bytes(b"garbage")
    report = tmp_path / "errors.json"
    for _ in range(2):
        r = _cli(src, "--ext", "dat", "-o", out, "--error-report", report, "--no-progress")
        assert r.returncode == 1, r.stderr
        doc = json.loads(report.read_text())
        assert doc["zipkit_error_report"] == 1 and doc["failed"][0]["stem"] == "a"


# --- property: any sequence of runs loses nothing ----------------------------------------------

_names = st.sampled_from(["c1", "c2", "c3"])
_exts = st.sampled_from(["dat", "log", "sim"])
_step = st.one_of(
    st.tuples(st.just("write"), _names, _exts, st.binary(min_size=0, max_size=300)),
    st.tuples(st.just("delete"), _names, _exts, st.just(b"")),
    st.tuples(st.just("run"), st.sampled_from(["always", "update", "never"]),
              st.lists(_exts, min_size=1, max_size=3, unique=True), st.booleans()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_any_sequence_of_runs_loses_nothing(tmp_path_factory, steps) -> None:
    """Every version of every source that ever existed is, after the last run, on disk or in
    the latest archive of its stem — unless the test itself deleted or overwrote it before a
    run archived it."""
    root = tmp_path_factory.mktemp("seq")
    src, out = root / "src", root / "out"
    src.mkdir()
    archived: dict[tuple[str, str], bytes] = {}  # (stem, member) → content the archive must hold
    for step in steps:
        if step[0] == "write":
            _, stem, ext, data = step
            (src / f"{stem}.{ext}").write_bytes(data)
        elif step[0] == "delete":
            _, stem, ext, _ = step
            (src / f"{stem}.{ext}").unlink(missing_ok=True)
        else:
            _, policy, exts, delete = step
            on_disk = {p.name: p.read_bytes() for p in src.iterdir()}
            snap = snapshot(src)
            try:
                rep = zip_by_extension(src, exts, out, overwrite=policy, delete_sources=delete,
                                       progress=False, workers=1)
            except zipkit.NothingToDo:
                continue
            assert rep.success, rep
            assert_nothing_lost(snap, out)
            for r in rep.results:
                if r.status == "ok":
                    for name in r.files:
                        archived[(r.stem, name)] = on_disk[name]
                    for name in r.deleted:
                        assert not (src / name).exists()
            # the archives hold every member ever archived, with its latest archived content,
            # unless a later version is still on disk (not yet archived: that one is the copy)
            for (stem, name), data in archived.items():
                with zipfile.ZipFile(out / f"{stem}.zip") as zf:
                    got = zf.read(name)
                assert got == data, (stem, name)
    assert temp_files(out) == []
    shutil.rmtree(root)


def test_the_forms_preview_and_choices_say_merge_and_replace(tmp_path: Path) -> None:
    pytest.importorskip("ipywidgets")
    from zipkit.widgets import ZipForm

    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"a")
    out.mkdir()
    with zipfile.ZipFile(out / "a.zip", "w") as zf:
        zf.writestr("a.log", "archived earlier")
    form = ZipForm(root=tmp_path, source=src, extensions=["dat"], output=out, workers=1)
    assert [v for _, v in form.overwrite.options] == ["always", "update", "never", "replace"]
    form.preview_button.click()
    assert "merge: 1 member kept" in form.result.value
    form.overwrite.value = "replace"
    form.preview_button.click()
    assert "replace: 1 member dropped" in form.result.value
    form.overwrite.value = "always"
    form.zip_button.click()
    rep = form.wait(60)
    assert rep["a"].carried == 1 and "merge: 1 member(s) kept" in form.result.value


def test_a_member_zip_wrote_from_a_pipe_with_a_data_descriptor_carries_over(tmp_path: Path) -> None:
    """``cat f | zip - - > a.zip`` streams: the member has a data descriptor (flag bit 3). Carried,
    its sizes go into its local header; every reader accepts the result."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    payload = b"piped into zip\n" * 3000
    r = subprocess.run(["zip", "-q", "-", "-"], input=payload, capture_output=True)  # to a pipe
    assert r.returncode == 0, r.stderr
    (out / "p.zip").write_bytes(r.stdout)
    with zipfile.ZipFile(out / "p.zip") as zf:
        assert zf.infolist()[0].flag_bits & 0x8
    write(src / "p.dat", b"new")
    rep = zip_by_extension(src, "dat", out, progress=False, verify=True)
    assert rep["p"].status == "ok" and rep["p"].carried == 1, rep["p"].message
    with zipfile.ZipFile(out / "p.zip") as zf:
        assert zf.read("-") == payload and not zf.getinfo("-").flag_bits & 0x8
    _third_party_readers(out / "p.zip")


def test_carrying_a_huge_member_over_takes_bounded_memory(tmp_path: Path) -> None:
    """1 GiB of zeros deflated to ~1 MiB: carrying it decompresses it on the side, for its CRC,
    in chunks; the zipping process stays far below the member's size."""
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(out / "big.zip", "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("big.bin", "w", force_zip64=True) as m:
            block = bytes(1 << 20)
            for _ in range(1024):
                m.write(block)
    write(src / "big.dat", b"new")
    # VmHWM: the peak of this process since its exec (ru_maxrss would include the forked parent's)
    code = ("import sys, zipkit\n"
            "r = zipkit.zip_by_extension(sys.argv[1], 'dat', sys.argv[2], progress=False)\n"
            "assert r['big'].status == 'ok' and r['big'].carried == 1, r['big'].message\n"
            "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    r = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True,
                       env=subprocess_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) * 1024 < 100 << 20, f"peak RSS {int(r.stdout) >> 10} MiB"
    with zipfile.ZipFile(out / "big.zip") as zf:
        assert zf.getinfo("big.bin").file_size == 1 << 30


@pytest.mark.parametrize(("section", "policy"), [
    ({"default": {"config": {"overwrite": {"output": True}}}}, "always"),
    ({"default": {"config": {"overwrite": {"output": False}}}}, "never"),
    ({"zipkit": {"overwrite": "replace"}}, "replace"),
    ({"zipkit": {"overwrite": "update"}}, "update"),
])
def test_configs_and_the_dry_run_say_what_happens_to_an_existing_archive(tmp_path: Path, section: dict,
                                                                        policy: str) -> None:
    """Old configs' ``overwrite.output: true`` merges (always); the ``zipkit:`` section takes
    every policy; ``--dry-run`` prints the plan's merge/replace line and writes nothing."""
    import yaml

    data, out = tmp_path / "data", tmp_path / "out"
    write(data / "c1.csv", b"csv")
    out.mkdir()
    with zipfile.ZipFile(out / "c1.zip", "w") as zf:
        zf.writestr("c1.log", "archived before")
    os.utime(out / "c1.zip", (1e9, 1e9))
    doc = {"analysis": {"input_directory": str(data), "filename": {"extension": ["csv"]}},
           "file_management": {"output_directory": str(out)}, **section}
    cfg = tmp_path / "job.yml"
    cfg.write_text(yaml.safe_dump(doc))
    assert zipkit._config.load_config(cfg).plan_kwargs["overwrite"] == policy
    before = (out / "c1.zip").read_bytes()
    r = _cli(cfg, "--dry-run")
    assert r.returncode == 0, r.stderr
    expected = {"always": "merge: 1 member kept", "update": "merge: 1 member kept (new members)",
                "never": "archive exists", "replace": "replace: 1 member dropped"}[policy]
    assert expected in r.stdout, r.stdout
    assert (out / "c1.zip").read_bytes() == before
    r = _cli(cfg, "--no-progress")
    assert r.returncode == 0, r.stderr
    names = sorted(member_hashes(out / "c1.zip"))
    assert names == {"always": ["c1.csv", "c1.log"], "update": ["c1.csv", "c1.log"],
                     "never": ["c1.log"], "replace": ["c1.csv"]}[policy]
