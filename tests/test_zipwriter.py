"""The direct writer of stems of small files: zipfile's bytes, ZIP64 where zipfile uses it, and
memory per member that stays small (issue 17: a stem of 200,000 tiny files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

import zipkit._archive as archive
from zipkit import plan, zip_by_extension
from zipkit._archive import write_archive


def make(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {n: zf.read(n) for n in zf.namelist()}


def unzip_finds_no_error(path: Path) -> None:
    assert shutil.which("unzip"), "Info-ZIP unzip is needed (apt-get install unzip)"
    subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)


def text(n: int, seed: int) -> bytes:
    return b"".join(b"%d,%d\n" % (seed, i) for i in range(n))[:n]


@pytest.mark.parametrize("limits", [(3000, 0xFFFF), (3000, 5), (1 << 40, 5)],
                         ids=["sizes-and-offsets", "and-count", "count-only"])
@pytest.mark.parametrize("options", [{}, {"compression": "stored"}, {"reproducible": True}], ids=repr)
def test_the_direct_writer_writes_zip64_exactly_where_zipfile_does(tmp_path, monkeypatch, limits,
                                                                     options):
    """With zipfile's ZIP64 limits lowered (for both writers), members past the size limit,
    offsets past it, a directory past it and more members than the count limit: the direct
    writer's ZIP64 fields, versions and end records must be zipfile's, byte for byte."""
    size_limit, count_limit = limits
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", size_limit)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", count_limit)
    files = {f"z_{i:02d}.txt": text(n, i) for i, n in enumerate((10, 2000, 2900, 3100, 8000, 0, 40, 5000))}
    files["z_rand.bin"] = os.urandom(3500)  # stored, over the limit
    files["z_Ölbild.txt"] = text(100, 99)
    src = make(tmp_path / "src", files)
    p = plan(src, ["txt", "bin"], tmp_path / "a", stems=["z"], **options)
    assert archive._direct(p.stems[0], p.options)
    direct = zip_by_extension(src, ["txt", "bin"], tmp_path / "a", stems=["z"], workers=1,
                              progress=False, **options)
    monkeypatch.setattr(archive, "_DIRECT", False)
    streamed = zip_by_extension(src, ["txt", "bin"], tmp_path / "b", stems=["z"], workers=1,
                                progress=False, **options)
    assert direct.success and streamed.success
    a, b = (tmp_path / "a" / "z.zip").read_bytes(), (tmp_path / "b" / "z.zip").read_bytes()
    assert (b"PK\x06\x06" in a) == (count_limit < len(files) or size_limit < len(a))
    if sys.version_info >= (3, 11):
        # Python 3.10's zipfile writes "version needed" 2.0 in some headers of ZIP64 members;
        # 3.11 writes 4.5, as APPNOTE 4.4.3 asks, and so does the direct writer: zipfile's bytes
        # are the reference from 3.11 on (3.10 still reads both back, below)
        assert a == b
    monkeypatch.undo()  # read back with the real limits: the ZIP64 fields must be what counts
    assert members(tmp_path / "a" / "z.zip") == files
    unzip_finds_no_error(tmp_path / "a" / "z.zip")


def test_a_stem_of_many_tiny_files_keeps_little_memory_per_member(tmp_path):
    """20,000 tiny members: while the archive is written, Python holds a few hundred bytes per
    member at most (its central-directory entry and what was read), not zipfile's ZipInfo
    and a stat result each (about 1.6 KiB a member before)."""
    n = 20_000
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        (src / f"m_{i:05d}.txt").write_bytes(b"row,%d\n" % i * (1 + i % 4))
    p = plan(src, "txt", tmp_path / "out", stems=["m"])
    stem = p.stems[0]
    stem.names, stem.bytes  # the plan's own values, computed before measuring  # noqa: B018
    (tmp_path / "out").mkdir()
    tracemalloc.start()
    try:
        result = write_archive(stem, p.options, run_id="t")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "ok", result.message
    assert peak / n < 400, f"{peak / n:.0f} bytes a member"
    with zipfile.ZipFile(tmp_path / "out" / "m.zip") as zf:
        assert len(zf.infolist()) == n and zf.testzip() is None


@pytest.mark.slow
def test_more_than_65535_members_in_one_stem_read_back_everywhere(tmp_path):
    """A real ZIP64 count: 70,000 members, read by zipfile, unzip and 7-Zip; delete_sources
    removes every source once the archive is in place."""
    n = 70_000
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        (src / f"c_{i:05d}.csv").write_bytes(b"%d\n" % i)
    rep = zip_by_extension(src, "csv", tmp_path / "out", stems=["c"], progress=False, verify=True,
                           delete_sources=True)
    assert rep.success, rep.failed
    assert len(rep.ok[0].deleted) == n and os.listdir(src) == []
    path = tmp_path / "out" / "c.zip"
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert len(infos) == n and zf.read("c_69999.csv") == b"69999\n"
    unzip_finds_no_error(path)
    seven = shutil.which("7zz") or shutil.which("7z")
    assert seven, "7-Zip is needed (7zz)"
    out = subprocess.run([seven, "t", str(path)], check=True, capture_output=True, text=True).stdout
    assert f"Files: {n}" in out
