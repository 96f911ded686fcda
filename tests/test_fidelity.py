"""Members as faithful as Info-ZIP's: exact times and owners, stored when compression does not pay,
and reproducible archives that do not depend on the worker, thread or CPU count."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest

import zipkit._archive as archive
from zipkit import ArchiveOptions, plan, zip_by_extension
from zipkit._archive import write_archive
from zipkit._members import dos_time, extra_fields, fixed_time, sample_incompressible

MiB = 1 << 20
def needs_zip(test):  # Info-ZIP's zip and zipinfo are the reference: .ci/run installs them
    def check(*args, **kwargs):
        if not (shutil.which("zip") and shutil.which("zipinfo")):
            pytest.fail("Info-ZIP zip/zipinfo not installed (.ci/run installs Debian's zip and unzip)")
        return test(*args, **kwargs)

    return functools.wraps(test)(check)


def text(n: int, seed: int = 1) -> bytes:
    """``n`` bytes of CSV-like text (deflate keeps about a third)."""
    rng = random.Random(seed)
    rows = b"".join(b"%08d,%.4f,%.2f\n" % (i, rng.random(), i * 0.01) for i in range(n // 20 + 1))
    assert len(rows) >= n
    return rows[:n]


def noise(n: int, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(n)


def fields(extra: bytes) -> dict[int, bytes]:
    """An extra field's subfields by id."""
    out, i = {}, 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        out[tag] = extra[i + 4:i + 4 + size]
        i += 4 + size
    return out


def headers(path: Path) -> dict[str, tuple[zipfile.ZipInfo, dict[int, bytes], dict[int, bytes]]]:
    """Each member's info, its local header's extra subfields and its central header's."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack_from("<HH", head, 26)
            f.seek(name_len, os.SEEK_CUR)
            out[info.filename] = (info, fields(f.read(extra_len)), fields(info.extra))
    return out


def ut_mtime(sub: dict[int, bytes]) -> int:
    flags, mtime = struct.unpack_from("<Bl", sub[0x5455])
    assert flags & 1
    return mtime


def ux_owner(sub: dict[int, bytes]) -> tuple[int, int]:
    version, us, uid, gs, gid = struct.unpack("<BBLBL", sub[0x7875])
    assert (version, us, gs) == (1, 4, 4)
    return uid, gid


def make(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# --- times and owners -------------------------------------------------------------------------
@pytest.fixture
def in_tz(monkeypatch):
    """Switch this process's local time zone."""
    def switch(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()
    yield switch
    monkeypatch.undo()
    time.tzset()


STAMPS = {"s_even.dat": 1_600_000_000, "s_odd.dat": 1_600_000_001, "s_frac.dat": 1_600_000_001.75,
          "s_minute.dat": 1_600_000_019, "s_newyear.dat": 1_609_459_199,  # 2020-12-31 23:59:59 UTC
          "s_old.dat": 300_000_000}  # 1979: the DOS time can only say 1980-01-01


@needs_zip
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"])
def test_dos_time_and_extra_fields_are_what_zip_writes(tmp_path, in_tz, tz):
    """zip writes an odd second as the next even one (12:00:01 → 12:00:02) in local time, and
    the exact second in UTC in 0x5455; the owner in 0x7875. Checked against Info-ZIP zip."""
    in_tz(tz)
    src = make(tmp_path / "src", {n: b"data of %s\n" % n.encode() * 5 for n in STAMPS})
    for n, t in STAMPS.items():
        os.utime(src / n, (t, t))
        if os.geteuid() == 0:
            os.chown(src / n, 1234, 5678)
    subprocess.run(["zip", "-q", str(tmp_path / "zip.zip"), *sorted(STAMPS)], cwd=src, check=True)
    rep = zip_by_extension(src, "dat", tmp_path / "out", stems=["s"], progress=False)
    assert rep.success
    theirs, ours = headers(tmp_path / "zip.zip"), headers(tmp_path / "out" / "s.zip")
    assert sorted(ours) == sorted(theirs) == sorted(STAMPS)
    for name, t in STAMPS.items():
        (zi, zl, zc), (oi, ol, oc) = theirs[name], ours[name]
        assert oi.date_time == zi.date_time == dos_time(t), name
        assert ut_mtime(ol) == ut_mtime(oc) == ut_mtime(zc) == int(t), name
        assert ux_owner(ol) == ux_owner(oc) == ux_owner(zc) == ux_owner(zl), name
        assert oi.external_attr == zi.external_attr
    assert dos_time(1_600_000_001) == dos_time(1_600_000_002) != dos_time(1_600_000_000)


def test_dos_time_limits():
    assert dos_time(0) == (1980, 1, 1, 0, 0, 0)
    assert dos_time(2 ** 33) == (2107, 12, 31, 23, 59, 58)
    assert fixed_time(None) == ((1980, 1, 1, 0, 0, 0), 315532800)
    assert fixed_time(1_700_000_001) == ((2023, 11, 14, 22, 13, 22), 1_700_000_001)
    owner_only = bytes.fromhex("7578 0b00 01 04 00000000 04 00000000")  # mtime out of 0x5455's range
    assert extra_fields(1 << 31, 0, 0) == extra_fields(-1, 0, 0) == owner_only
    assert extra_fields(5, 1 << 32, 0) == bytes.fromhex("5554 0500 01 05000000")


# every way zipkit writes a member: in memory, streamed small, streamed big, threaded, other methods
WRITERS = {
    "in-memory": ({"k_a.csv": text(50_000), "k_b.bin": noise(3000), "k_c.txt": b""}, {}),
    "streamed": ({"k_a.csv": text(3 * MiB), "k_b.bin": noise(2 * MiB), "k_c.txt": b"",
                  "k_d.csv": text(5000)}, {}),
    "threaded": ({"k_a.csv": text(5 * MiB), "k_b.bin": noise(5 * MiB), "k_c.txt": b"x"}, {"workers": 2}),
    "stored": ({"k_a.csv": text(50_000), "k_c.txt": b""}, {"compression": "stored"}),
    "bzip2": ({"k_a.csv": text(50_000), "k_b.bin": noise(2 * MiB), "k_c.txt": b""}, {"compression": "bzip2"}),
    "lzma": ({"k_a.csv": text(50_000), "k_b.bin": noise(3000), "k_c.txt": b""}, {"compression": "lzma"}),
}


@pytest.mark.parametrize("kind", WRITERS)
def test_every_writer_records_mtime_and_owner_in_both_headers(tmp_path, kind):
    files, options = WRITERS[kind]
    src = make(tmp_path / "src", files)
    for i, n in enumerate(sorted(files)):
        t = 1_500_000_001 + 7 * i
        os.utime(src / n, (t, t))
        if os.geteuid() == 0:
            os.chown(src / n, 1000 + i, 2000 + i)
    rep = zip_by_extension(src, ["csv", "bin", "txt"], tmp_path / "out", stems=["k"], progress=False,
                           **{"workers": 1, **options})
    assert rep.success, rep.failed
    if kind == "threaded":
        assert rep.ok[0].compressor.endswith("x2")
    got = headers(tmp_path / "out" / "k.zip")
    assert sorted(got) == sorted(files)
    for n in sorted(files):
        info, local, central = got[n]
        st = os.stat(src / n)
        assert local[0x5455] == central[0x5455] and ut_mtime(local) == st.st_mtime
        assert ux_owner(local) == ux_owner(central) == (st.st_uid, st.st_gid)
        assert info.date_time == dos_time(st.st_mtime)
        assert info.compress_size <= info.file_size  # never larger than the file


def test_reproducible_members_carry_the_fixed_epoch_and_owner(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")
    src = make(tmp_path / "src", {"r_a.csv": text(9000), "r_b.csv": text(2 * MiB)})
    if os.geteuid() == 0:
        os.chown(src / "r_a.csv", 1234, 5678)
    os.chmod(src / "r_b.csv", 0o600)
    zip_by_extension(src, "csv", tmp_path / "out", stems=["r"], reproducible=True, progress=False)
    for info, local, central in headers(tmp_path / "out" / "r.zip").values():
        assert ut_mtime(local) == ut_mtime(central) == 1_700_000_001
        assert ux_owner(local) == ux_owner(central) == (0, 0)
        assert info.date_time == (2023, 11, 14, 22, 13, 22)  # UTC, odd second rounded up as zip does
        assert info.external_attr >> 16 == 0o100644


# --- store when compression does not pay --------------------------------------------------------
def png(width: int, height: int, seed: int) -> bytes:
    """A real PNG of noisy pixels: its image data is zlib-compressed, as in any PNG."""
    rows = b"".join(b"\x00" + noise(width * 3, seed + y) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))

    ihdr = struct.pack(">LLBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 6))
            + chunk(b"IEND", b""))


@pytest.fixture
def compressors(monkeypatch):
    """The sizes of the members for which a writer made a compressor."""
    made: list[int] = []
    real = archive.compressor

    def spy(options, backend, size, pool):
        made.append(size)
        return real(options, backend, size, pool)

    monkeypatch.setattr(archive, "compressor", spy)
    return made


@pytest.mark.parametrize("compression", ["deflate", "bzip2", "lzma"])
def test_empty_tiny_and_incompressible_members_are_stored(tmp_path, compression, compressors):
    """Empty → stored; 10 random bytes → stored (deflate would make 12); a big random file, a
    PNG and a gzip file are recognised by their samples and copied without compressing them."""
    import gzip

    files = {"z_empty.dat": b"", "z_tiny.dat": noise(10), "z_random.dat": noise(3 * MiB + 17),
             "z_image.png": png(1200, 900, 5), "z_packed.gz": gzip.compress(noise(2 * MiB), 6, mtime=0),
             "z_text.csv": text(2 * MiB)}
    src = make(tmp_path / "src", files)
    rep = zip_by_extension(src, ["dat", "png", "gz", "csv"], tmp_path / "out", stems=["z"],
                           compression=compression, progress=False, verify=True)
    assert rep.success, rep.failed
    method = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
              "lzma": zipfile.ZIP_LZMA}[compression]
    with zipfile.ZipFile(tmp_path / "out" / "z.zip") as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
        assert {n: zf.read(n) for n in zf.namelist()} == files
    assert kinds == {n: method if n == "z_text.csv" else zipfile.ZIP_STORED for n in files}
    # compressors made: the small files' (compressed whole, then kept or not) and the big text's
    assert sorted(compressors) == [0, 10, len(files["z_text.csv"])]


def test_a_member_whose_samples_lie_is_written_again_stored(tmp_path, compressors):
    """Samples that compress, a member that does not shrink (deflate level 0 only adds block
    headers): deflated as it streams, then written again stored, read again from the same
    open file; progress counts its bytes once, and the next member follows it."""
    size = 6 * MiB + 7
    data = noise(size)
    src = make(tmp_path / "src", {"l_a.csv": text(size), "l_b.bin": data, "l_c.csv": text(5000)})
    p = plan(src, ["bin", "csv"], tmp_path / "out", stems=["l"], verify=True, level=0)
    fd = os.open(src / "l_a.csv", os.O_RDONLY)
    try:
        assert not sample_incompressible(fd, size)
    finally:
        os.close(fd)
    (tmp_path / "out").mkdir()
    seen: list[int] = []
    result = write_archive(p.stems[0], p.options, run_id="t", on_bytes=seen.append)
    assert result.status == "ok" and result.verified, result.message
    assert sum(seen) == 2 * size + 5000
    with zipfile.ZipFile(tmp_path / "out" / "l.zip") as zf:
        assert zf.testzip() is None and zf.read("l_a.csv") == text(size) and zf.read("l_b.bin") == data
        assert names_in_order(zf) == ["l_a.csv", "l_b.bin", "l_c.csv"]
        assert [(i.compress_type, i.compress_size) for i in zf.infolist()] == [
            (zipfile.ZIP_STORED, size), (zipfile.ZIP_STORED, size), (zipfile.ZIP_STORED, 5000)]
    assert compressors == [size, 5000]  # the random file was never compressed
    assert (tmp_path / "out" / "l.zip").stat().st_size == result.bytes_out < 2 * size + 5000 + 500
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tq", str(tmp_path / "out" / "l.zip")], check=True, capture_output=True)


def names_in_order(zf: zipfile.ZipFile) -> list[str]:
    return [i.filename for i in sorted(zf.infolist(), key=lambda i: i.header_offset)]


def test_no_member_is_larger_than_its_file(tmp_path):
    """Sizes around every writer's limit, compressible and not: stored size never exceeded."""
    sizes = [0, 1, 2, 10, 100, 4095, 4096, 65_535, 131_071, 131_072, MiB - 1, MiB, MiB + 1]
    files = {f"m_{k:02d}_{kind}.dat": (noise if kind == "n" else text)(n, k)
             for k, n in enumerate(sizes) for kind in "nt"}
    src = make(tmp_path / "src", files)
    for opts in ({}, {"compression": "bzip2"}, {"compression": "lzma"}, {"reproducible": True}):
        out = tmp_path / f"out{len(os.listdir(tmp_path))}"
        assert zip_by_extension(src, "dat", out, stems=["m"], progress=False, **opts).success
        with zipfile.ZipFile(out / "m.zip") as zf:
            for info in zf.infolist():
                assert info.compress_size <= info.file_size, (opts, info.filename, info.compress_size)
                if info.file_size == 0 or info.filename.endswith("_n.dat"):
                    assert info.compress_type == zipfile.ZIP_STORED, (opts, info.filename)
            assert {n: zf.read(n) for n in zf.namelist()} == files


# --- reproducible whatever the workers, threads and CPUs ---------------------------------------
def threshold_corpus(folder: Path) -> Path:
    """Stems with members just under, at and over every limit of the writers: the 1 MiB
    in-memory stem and chunk size, the 4 MiB block-deflate size; text and random bytes."""
    files: dict[str, bytes] = {}
    for name, n in {"tiny": 1000, "under1m": MiB - 1, "at1m": MiB, "over1m": MiB + 1,
                    "under4m": 4 * MiB - 1, "at4m": 4 * MiB, "over4m": 4 * MiB + 1}.items():
        files[f"{name}_text.csv"] = text(n, n)
    files["over4m_noise.bin"] = noise(4 * MiB + 3)
    files["small_a.csv"] = text(400_000)  # a stem under 1 MiB: built in memory
    files["small_b.bin"] = noise(5000)
    files["small_c.csv"] = b""
    files["mixed_a.csv"] = text(6 * MiB + 5) + noise(MiB)
    return make(folder, files)


def digests(out: Path) -> dict[str, str]:
    return {z.name: hashlib.sha256(z.read_bytes()).hexdigest() for z in sorted(out.glob("*.zip"))}


def test_reproducible_archives_do_not_depend_on_workers_threads_or_cpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = threshold_corpus(tmp_path / "src")
    exts = ["csv", "bin"]
    stems = ["tiny", "under1m", "at1m", "over1m", "under4m", "at4m", "over4m", "small", "mixed"]
    results = {}
    for workers in (1, 2, "auto", 4):
        out = tmp_path / f"w{workers}"
        rep = zip_by_extension(src, exts, out, stems=stems, reproducible=True, workers=workers,
                               progress=False)
        assert rep.success, rep.failed
        results[f"workers={workers}"] = digests(out)
    p = plan(src, exts, tmp_path / "direct", stems=stems, reproducible=True)
    for threads in (1, 4):  # one stem at a time, its big members on 1 or 4 threads
        out = tmp_path / f"t{threads}"
        out.mkdir()
        opts = ArchiveOptions(**{**p.options.__dict__, "threads": threads})
        for stem in p.stems:
            s = type(stem)(stem.stem, stem.files, out / stem.archive.name)
            r = write_archive(s, opts, run_id="t")
            assert r.status == "ok", r.message
            if threads > 1 and stem.bytes >= 4 * MiB:
                assert r.compressor.endswith("x4")
        results[f"threads={threads}"] = digests(out)
    first = next(iter(results.values()))
    assert len(first) == len(stems)
    assert all(d == first for d in results.values()), results
    for name in results["workers=1"]:
        with zipfile.ZipFile(tmp_path / "w1" / name) as zf:
            assert zf.testzip() is None


def test_cpu_count_does_not_change_reproducible_bytes(tmp_path, monkeypatch):
    """workers='auto' on one CPU and on two (the process's CPU affinity) give the same bytes."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs and sched_setaffinity")
    src = make(tmp_path / "src", {"c_a.csv": text(5 * MiB), "c_b.bin": noise(5 * MiB)})
    script = ("import sys, zipkit; r = zipkit.zip_by_extension(sys.argv[1], ['csv', 'bin'], sys.argv[2],"
              " stems=['c'], reproducible=True, workers='auto', progress=False); print(r.ok[0].compressor)")
    got, used = [], []
    for cpus in ({0}, set(sorted(os.sched_getaffinity(0))[:2])):
        out = tmp_path / f"cpus{len(cpus)}"
        run = subprocess.run(["taskset", "-c", ",".join(map(str, sorted(cpus))), sys.executable, "-c", script,
                              str(src), str(out)], check=True, capture_output=True, text=True)
        used.append(run.stdout.strip())
        got.append(digests(out))
    assert used == ["isal-3", "isal-3x2"]  # one thread, then two
    assert got[0] == got[1] and len(got[0]) == 1


# --- the benchmark that measures it ---------------------------------------------------------
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="needs the repo's .venv (--ref)")
def test_benchmark_times_the_incompressible_corpus_against_a_reference_checkout(tmp_path):
    """``--ref REPO`` runs that checkout's zipkit in the same rounds; the corpus is 30% random."""
    import json

    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.corpora import build
    finally:
        sys.path.remove(str(REPO))
    corpus = build("incompressible", tmp_path / "c", 0.01)
    sizes = {"random": 0, "all": 0}
    for p in corpus.paths():
        sizes["all"] += p.stat().st_size
        if p.name.endswith("_frames.bin"):
            sizes["random"] += p.stat().st_size
            data = p.read_bytes()
            assert len(zlib.compress(data, 6)) > len(data)  # does not compress
    assert 0.29 < sizes["random"] / sizes["all"] < 0.31
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--scale", "0.01", "--repeat", "1",
                        "--only", "incompressible", "--methods", "zipkit,zipkit-ref", "--ref", str(REPO),
                        "--corpora", str(tmp_path / "c"), "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    methods = json.loads(out.read_text())["cases"]["incompressible"]["methods"]
    assert methods["zipkit-ref"]["error"] is None and methods["zipkit"]["error"] is None
    assert methods["zipkit"]["output_bytes"] == methods["zipkit-ref"]["output_bytes"] > 0  # same code
    assert "zipkit-ref" in methods["zipkit"]["speedup_vs"]
