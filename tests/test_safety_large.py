"""Fault injection, size limits of the ZIP format: 70,000 members, and one member over 4 GiB (ZIP64).

Marked ``slow`` but run in CI. The 4 GiB member is a sparse file archived with
``compression="stored"``: zipfile inflates with zlib at ~200 MB/s, so a deflated 4 GiB member
would cost ~25 s per read-back (zipkit's verify, then this test's check); stored, each read
is a CRC pass over the page cache.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path

import pytest
from safety_helpers import assert_nothing_lost, assert_report_truthful, small_filesystem, snapshot, write

import zipkit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _has_zip64_end_record(archive: Path) -> bool:
    with open(archive, "rb") as f:
        f.seek(max(0, archive.stat().st_size - 1024))
        return b"PK\x06\x06" in f.read()


def test_70000_members_in_one_archive(tmp_path: Path) -> None:
    """70,000 files in one stem, with delete_sources (verify, fsync, 70,000 unlinks).

    On a tmpfs where one can be mounted: on a disk, the fsync before the deletes makes the
    journal write out all 70,000 freshly created files first, which costs minutes on a busy CI
    disk and tests the disk, not zipkit.
    """
    with small_filesystem(tmp_path / "fs", 1 << 20, loop=False, required=False):
        _many_members(tmp_path / "fs")


def _many_members(base: Path) -> None:
    src, out = base / "src", base / "out"
    src.mkdir()
    n = 70_000
    for i in range(n):
        (src / f"many_{i:05}.dat").write_bytes(f"member {i}\n".encode() * (1 + i % 7))
    write(src / "few_1.dat", b"a second stem")
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, "dat", out, stems=["many", "few"], delete_sources=True,
                                  progress=False)
    many = rep["many"]
    assert many.status == "ok" and len(many.files) == n and len(many.deleted) == n, many.message
    assert rep["few"].status == "ok"
    with zipfile.ZipFile(out / "many.zip") as zf:
        names = zf.namelist()
    assert len(names) == n and names == sorted(names)
    assert _has_zip64_end_record(out / "many.zip"), "more than 65,535 entries need the ZIP64 end record"
    assert not list(src.iterdir())
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)


def test_a_member_over_4_gib(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    huge = src / "huge.dat"
    size = (4 << 30) + 4097
    marks = {0: b"start", (1 << 32) - 3: b"across 4 GiB", size - 3: b"end"}
    src.mkdir()
    try:
        with open(huge, "wb") as f:  # sparse: only the marks take disk space
            f.truncate(size)
            for at, data in marks.items():
                f.seek(at)
                f.write(data)
        write(src / "huge.log", b"the log of a big run\n")
        snap = snapshot(src)
        rep = zipkit.zip_by_extension(src, ["dat", "log"], out, compression="stored", verify=True,
                                      progress=False)
        r = rep["huge"]
        assert r.status == "ok" and r.verified and r.bytes_in == size + 21, (r.status, r.message)
        with zipfile.ZipFile(out / "huge.zip") as zf:
            info = zf.getinfo("huge.dat")
            assert info.file_size == size and info.compress_size == size
            assert info.extra[:2] == b"\x01\x00", "the member needs a ZIP64 extra field"
            with zf.open(info) as m:
                m.seek((1 << 32) - 3)  # stored: seekable; the whole member's CRC is checked below
                assert m.read(12) == b"across 4 GiB"
        assert_nothing_lost(snap, out)
        assert_report_truthful(rep, snap, src, out)
    finally:
        for p in (out / "huge.zip", huge):
            with contextlib.suppress(OSError):
                os.unlink(p)
