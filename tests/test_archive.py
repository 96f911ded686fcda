"""Writing one archive: formats, names, timestamps, verify, failures leave nothing behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import zipkit
from zipkit import ArchiveOptions, plan, zip_by_extension
from zipkit._archive import write_archive
from zipkit._compress import compressor_name


def make(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


CSV = b"".join(b"%d,%.3f,%.3f\n" % (i, i * 0.1, (i % 97) * 1.5) for i in range(20000))
BIN = os.urandom(50_000)


def no_temp_files_or_archives(out: Path) -> bool:
    """Nothing but (empty) temp folders: write_archive leaves its process's temp folder for the
    next stem; the run removes it at the end."""
    return all(e.is_dir() and not os.listdir(e) for e in out.iterdir())


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize(("compression", "level", "method"), [
    ("deflate", None, zipfile.ZIP_DEFLATED), ("deflate", 1, zipfile.ZIP_DEFLATED),
    ("deflate", 9, zipfile.ZIP_DEFLATED), ("stored", None, zipfile.ZIP_STORED),
    ("bzip2", 9, zipfile.ZIP_BZIP2), ("lzma", None, zipfile.ZIP_LZMA),
])
def test_round_trip_every_compression(tmp_path, compression, level, method):
    src = make(tmp_path / "src", {"r1.csv": CSV, "r1.bin": BIN, "r2.csv": b""})
    rep = zip_by_extension(src, ["csv", "bin"], tmp_path / "out", compression=compression, level=level,
                           progress=False, workers=1)
    assert rep.success and len(rep.ok) == 2
    assert members(tmp_path / "out" / "r1.zip") == {"r1.bin": BIN, "r1.csv": CSV}
    assert members(tmp_path / "out" / "r2.zip") == {"r2.csv": b""}
    with zipfile.ZipFile(tmp_path / "out" / "r1.zip") as zf:
        # random bytes do not shrink: stored, whatever the method
        assert {i.filename: i.compress_type for i in zf.infolist()} == {"r1.bin": zipfile.ZIP_STORED,
                                                                        "r1.csv": method}
        assert zf.namelist() == ["r1.bin", "r1.csv"]  # sorted base names


def test_zlib_and_isal_backends_both_write_standard_deflate(tmp_path):
    src = make(tmp_path / "src", {"a.csv": CSV})
    sizes = {}
    for backend in ("zlib", "isal"):
        out = tmp_path / backend
        rep = zip_by_extension(src, "csv", out, deflate_backend=backend, progress=False)
        assert rep.ok[0].compressor == {"zlib": "zlib-6", "isal": "isal-3"}[backend]
        assert members(out / "a.zip") == {"a.csv": CSV}
        if shutil.which("unzip"):
            subprocess.run(["unzip", "-tq", str(out / "a.zip")], check=True, capture_output=True)
        sizes[backend] = (out / "a.zip").stat().st_size
    assert sizes["isal"] < len(CSV) / 2 and sizes["zlib"] < len(CSV) / 2


def test_default_backend_is_isal_when_installed():
    assert compressor_name(ArchiveOptions()) == "isal-3"
    assert compressor_name(ArchiveOptions(level=0)) == "zlib-0"
    assert compressor_name(ArchiveOptions(deflate_backend="zlib")) == "zlib-6"


def test_unicode_and_space_names_survive_unzip(tmp_path):
    names = {"Fall 1 Ölplattform.csv": b"1", "Fall 1 Ölplattform_測試.csv": b"2"}
    src = make(tmp_path / "src", names)
    zip_by_extension(src, "csv", tmp_path / "out", stems=["Fall 1 Ölplattform"], progress=False)
    assert members(tmp_path / "out" / "Fall 1 Ölplattform.zip") == names
    if shutil.which("unzip"):
        listing = subprocess.run(["unzip", "-Z1", str(tmp_path / "out" / "Fall 1 Ölplattform.zip")],
                                 capture_output=True, check=True).stdout.decode()
        assert sorted(listing.splitlines()) == sorted(names)


def test_timestamps_and_modes_follow_sources(tmp_path):
    src = make(tmp_path / "src", {"a.dat": b"x"})
    os.utime(src / "a.dat", (1_600_000_000, 1_600_000_000))
    os.chmod(src / "a.dat", 0o640)
    zip_by_extension(src, "dat", tmp_path / "out", progress=False)
    with zipfile.ZipFile(tmp_path / "out" / "a.zip") as zf:
        info = zf.getinfo("a.dat")
    import time

    assert info.date_time == time.localtime(1_600_000_000)[:6]
    assert info.external_attr >> 16 == 0o100640


def test_reproducible_archives_are_byte_identical(tmp_path, monkeypatch):
    src = make(tmp_path / "src", {"a.csv": CSV, "a.bin": BIN, "b.csv": b"b"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digests = []
    for i, workers in enumerate((1, 2)):
        os.utime(src / "a.csv", (1_000_000_000 + i, 1_000_000_000 + i))  # mtimes differ between runs
        out = tmp_path / f"out{i}"
        zip_by_extension(src, ["csv", "bin"], out, reproducible=True, workers=workers, progress=False)
        digests.append({z.name: hashlib.sha256(z.read_bytes()).hexdigest() for z in out.glob("*.zip")})
    assert digests[0] == digests[1]
    with zipfile.ZipFile(tmp_path / "out0" / "a.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100644}


def test_verify_passes_and_is_reported(tmp_path):
    src = make(tmp_path / "src", {"a.csv": CSV})
    rep = zip_by_extension(src, "csv", tmp_path / "out", verify=True, progress=False)
    assert rep.ok[0].verified


def test_failure_leaves_no_archive_and_no_temp_file(tmp_path):
    src = make(tmp_path / "src", {"a.csv": CSV, "b.csv": b"b"})
    p = plan(src, "csv", tmp_path / "out")
    (src / "a.csv").unlink()  # deleted after planning
    (tmp_path / "out").mkdir()
    result = write_archive(p.stems[0], p.options, run_id="t")
    assert result.status == "failed" and result.error_type == "FileNotFoundError"
    assert "a.csv" in result.message and result.traceback
    assert no_temp_files_or_archives(tmp_path / "out")


def test_file_growing_while_read_fails_its_stem(tmp_path):
    src = make(tmp_path / "src", {"a.csv": CSV * 5})
    p = plan(src, "csv", tmp_path / "out")
    (tmp_path / "out").mkdir()
    grown = []

    def grow(n):
        if not grown:
            with open(src / "a.csv", "ab") as f:
                f.write(b"more\n")
            grown.append(n)

    opts = ArchiveOptions(chunk_size=4096)
    result = write_archive(p.stems[0], opts, run_id="t", on_bytes=grow)
    assert result.status == "failed" and result.error_type == "SourceChangedError"
    assert "changed while it was read" in result.message
    assert no_temp_files_or_archives(tmp_path / "out")


def test_timeout_stops_a_stem_and_leaves_nothing(tmp_path):
    src = make(tmp_path / "src", {"a.bin": (CSV * 12)[: 4 << 20]})  # compressible: lzma is slow on it
    p = plan(src, "bin", tmp_path / "out", compression="lzma", timeout=0.05)
    (tmp_path / "out").mkdir()
    result = write_archive(p.stems[0], p.options, run_id="t")
    assert result.status == "timed_out" and result.error_type == "StemTimeout"
    assert no_temp_files_or_archives(tmp_path / "out")


def test_skip_action_writes_nothing(tmp_path):
    src = make(tmp_path / "src", {"a.csv": b"1"})
    zip_by_extension(src, "csv", tmp_path / "out", progress=False)
    before = (tmp_path / "out" / "a.zip").read_bytes()
    (src / "a.csv").write_bytes(b"2")
    rep = zip_by_extension(src, "csv", tmp_path / "out", overwrite="never", progress=False)
    assert [r.status for r in rep.results] == ["skipped"]
    assert (tmp_path / "out" / "a.zip").read_bytes() == before


def test_update_skips_up_to_date_and_rebuilds_stale(tmp_path):
    src = make(tmp_path / "src", {"a.csv": b"1", "b.csv": b"2"})
    zip_by_extension(src, "csv", tmp_path / "out", progress=False)
    second = zip_by_extension(src, "csv", tmp_path / "out", overwrite="update", progress=False)
    assert [r.status for r in second.results] == ["skipped", "skipped"]
    future = os.stat(tmp_path / "out" / "b.zip").st_mtime + 10
    (src / "b.csv").write_bytes(b"22")
    os.utime(src / "b.csv", (future, future))
    (src / "a_extra.csv").write_bytes(b"new")  # own stems: a new stem appears
    third = zip_by_extension(src, "csv", tmp_path / "out", overwrite="update", progress=False)
    assert {r.stem: r.status for r in third.results} == {"a": "skipped", "a_extra": "ok", "b": "ok"}
    assert members(tmp_path / "out" / "b.zip") == {"b.csv": b"22"}


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_big_member_of_a_lone_stem_is_deflated_on_several_threads(tmp_path, backend):
    """pigz's method: blocks primed with the previous 32 KiB, one standard deflate member."""
    big = (CSV * 40)[: 9 * (1 << 20) + 12345] + BIN
    exact = CSV[:4096] * 1280  # exactly 5 blocks of 1 MiB
    src = make(tmp_path / "src", {"big.csv": big, "big.bin": exact, "big.txt": b""})
    rep = zip_by_extension(src, ["csv", "bin", "txt"], tmp_path / "out", workers=2, progress=False,
                           deflate_backend=backend, verify=True)
    assert rep.ok[0].compressor.endswith("x2")
    assert members(tmp_path / "out" / "big.zip") == {"big.bin": exact, "big.csv": big, "big.txt": b""}
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(tmp_path / "out" / "big.zip")], check=True, capture_output=True)
    one = zip_by_extension(src, ["csv", "bin", "txt"], tmp_path / "one", workers=1, progress=False,
                           deflate_backend=backend)
    assert one.ok[0].compressor == f"{backend}-{3 if backend == 'isal' else 6}"
    ratio = rep.ok[0].bytes_out / one.ok[0].bytes_out
    assert 0.98 < ratio < 1.02  # the 32 KiB priming keeps the ratio of one stream


def test_lzma_level_is_honoured_and_bzip2_level_0_refused(tmp_path):
    src = make(tmp_path / "src", {"a.csv": CSV})
    sizes = {}
    for level in (0, 9):
        rep = zip_by_extension(src, "csv", tmp_path / f"l{level}", compression="lzma", level=level,
                               progress=False)
        assert rep.ok[0].compressor == f"lzma-{level}"
        assert members(tmp_path / f"l{level}" / "a.zip") == {"a.csv": CSV}
        sizes[level] = rep.ok[0].bytes_out
    assert sizes[9] < sizes[0]
    with pytest.raises(zipkit.UsageError, match="level for bzip2 must be an integer from 1 to 9, not 0"):
        plan(src, "csv", compression="bzip2", level=0)


@pytest.mark.parametrize("options", [
    {}, {"reproducible": True}, {"compression": "stored"}, {"deflate_backend": "zlib"},
    {"level": 1}, {"level": 0}, {"level": 9, "deflate_backend": "zlib"},
], ids=repr)
def test_stems_of_small_files_written_directly_match_the_streaming_writer_byte_for_byte(
        tmp_path, monkeypatch, options):
    """A stem of files under the chunk size is written member by member by the direct writer;
    the bytes must be those zipfile's streaming writer makes for the same files (names with
    spaces and umlauts, an empty member, binary, text)."""
    import zipkit._archive as archive

    files = {"s 1.csv": CSV[:30_000], "s 1.bin": BIN[:5000], "s 1.txt": b"", "s 1_Ölbild.csv": b"x" * 99}
    src = make(tmp_path / "src", files)
    options = {"stems": ["s 1"], **options}
    p = plan(src, ["csv", "bin", "txt"], tmp_path / "fast", **options)
    assert archive._direct(p.stems[0], p.options)  # this stem does take the direct path
    fast = zip_by_extension(src, ["csv", "bin", "txt"], tmp_path / "fast", workers=1, progress=False,
                            **options)
    monkeypatch.setattr(archive, "_DIRECT", False)  # every stem streams
    slow = zip_by_extension(src, ["csv", "bin", "txt"], tmp_path / "slow", workers=1, progress=False,
                            **options)
    assert fast.success and slow.success
    assert fast.ok[0].bytes_out == (tmp_path / "fast" / "s 1.zip").stat().st_size
    assert (tmp_path / "fast" / "s 1.zip").read_bytes() == (tmp_path / "slow" / "s 1.zip").read_bytes()
    assert members(tmp_path / "fast" / "s 1.zip") == files
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(tmp_path / "fast" / "s 1.zip")], check=True, capture_output=True)


def test_which_stems_are_written_directly(tmp_path):
    """Only deflate/stored stems whose files are each under the chunk size take the direct path."""
    import zipkit._archive as archive

    src = make(tmp_path / "src", {"a.csv": CSV[:200_000], "b.csv": (CSV * 4)[: (1 << 20) + 1]})
    p = plan(src, "csv", tmp_path / "out")
    a, b = p.stems
    assert archive._direct(a, p.options) and not archive._direct(b, p.options)
    assert not archive._direct(a, ArchiveOptions(compression="bzip2"))
    assert not archive._direct(a, ArchiveOptions(chunk_size=100_000))


def test_a_small_stem_whose_file_grew_since_the_plan_fails_unread(tmp_path):
    """Planned under 1 MiB, 3 MiB when written: not the file the plan saw, so the stem fails
    (DESIGN: "Files are read as the plan saw them") and nothing of it is read whole."""
    src = make(tmp_path / "src", {"g.csv": b"tiny", "g.txt": b"t" * 100})
    p = plan(src, ["csv", "txt"], tmp_path / "out")
    import zipkit._archive as archive

    assert archive._direct(p.stems[0], p.options)
    grown = (CSV * 12)[: 3 << 20]
    (src / "g.csv").write_bytes(grown)
    (tmp_path / "out").mkdir()
    reads: list[int] = []
    result = write_archive(p.stems[0], p.options, run_id="t", on_bytes=reads.append)
    assert result.status == "failed" and result.error_type == "SourceChangedError"
    assert "g.csv changed since the plan saw it (size 4 → 3145728" in result.message
    assert not reads and not (tmp_path / "out" / "g.zip").exists()


def test_cancel_with_a_given_thread_pool_leaves_no_temp_folder(tmp_path, monkeypatch):
    """The race that left ``.zipkit-RUN-PID.tmp`` behind, driven rather than hoped for: a task of
    the caller's thread pool asks for its temp file exactly when the run's clean-up has emptied
    that folder and is about to remove it. The task must get no file (the run is closed)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from zipkit import _archive, _tempfiles

    src = make(tmp_path / "src", {f"s{i:03d}.dat": os.urandom(20_000) for i in range(200)})
    out = tmp_path / "out"
    cancel = threading.Event()
    at_gate, cleanup_began, task_done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[str] = []
    real_temp_file, real_remove_folder = _archive._temp_file, _tempfiles._remove_folder

    def temp_file(folder, run_id):
        if threading.current_thread() is threading.main_thread() or at_gate.is_set():
            return real_temp_file(folder, run_id)
        at_gate.set()  # the one task that races the clean-up
        cleanup_began.wait(30)
        try:
            fd, path = real_temp_file(folder, run_id)
            outcome.append(f"made {path.name}")
            return fd, path
        except _tempfiles.RunClosed as e:
            outcome.append(f"refused: {e}")
            raise
        finally:
            task_done.set()

    def remove_folder(path):
        cleanup_began.set()  # listed and emptied; now the task tries; then the rmdir
        task_done.wait(0.5)
        real_remove_folder(path)

    def on_progress(ev):
        if ev.result is not None and ev.stems_done >= 5:
            cancel.set()
            at_gate.wait(30)  # the racing task is waiting at its temp file when the run stops

    monkeypatch.setattr(_archive, "_temp_file", temp_file)
    monkeypatch.setattr(_tempfiles, "_remove_folder", remove_folder)
    with ThreadPoolExecutor(2) as ex:
        rep = zip_by_extension(src, "dat", out, executor=ex, progress=on_progress, cancel=cancel,
                               deflate_backend="zlib", level=9)
        assert rep.cancelled
    assert task_done.is_set() and cleanup_began.is_set(), "the race was not driven"
    assert len(outcome) == 1 and outcome[0].startswith("refused: run "), outcome
    assert [n for n in os.listdir(out) if not n.endswith(".zip")] == []
