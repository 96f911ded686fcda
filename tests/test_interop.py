"""Every kind of archive zipkit writes, read by the readers users have: Info-ZIP unzip, 7-Zip and
libarchive's bsdtar. Each must test clean (no warnings), list the same names and extract the same
bytes; extracted in other time zones, every file gets its exact mtime back; as root, ``unzip -X``
and bsdtar restore the owner.

A reader is skipped only for a method it does not support: Info-ZIP unzip 6.0 cannot extract
LZMA members (method 14). CI installs the readers (Debian packages ``unzip``, ``7zip``,
``libarchive-tools``).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import zipkit

MiB = 1 << 20
READERS = {"unzip": "unzip", "7zz": "7zz", "bsdtar": "bsdtar"}
ZONES = ("America/New_York", "Asia/Kolkata")
EPOCH = 1_700_000_001  # SOURCE_DATE_EPOCH of the reproducible kind (odd: the DOS time rounds up)
UNSUPPORTED = {("unzip", "lzma"): "Info-ZIP unzip 6.0 does not support LZMA (method 14)"}


def text(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    rows = b"".join(b"%08d,%.5f,%.3f\n" % (i, rng.random(), i * 0.5) for i in range(n // 20 + 1))
    return rows[:n]


def noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def need(reader: str) -> str:
    exe = shutil.which(READERS[reader])
    if exe is None:
        pytest.fail(f"{READERS[reader]} is not installed: .ci/run installs it (Debian's zip, 7zip, "
                    "libarchive-tools); a missing reader fails rather than skips")
    return exe


def run(argv: list[str], tz: str = "UTC", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": tz, "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env, cwd=cwd,
                          timeout=600)


class Kind:
    """One kind of archive: how it is written, and what it must hold."""

    def __init__(self, name: str, files: dict[str, bytes], *, first: tuple[str, ...] = (),
                 **options: object):
        """``first``: extensions archived by an earlier run; the last run merges the rest in."""
        self.name, self.files, self.options, self.first = name, files, options, first
        self.archive: Path | None = None
        self.src: Path | None = None
        self.compressor = ""

    @property
    def method(self) -> str:
        return str(self.options.get("compression", "deflate"))


def _kinds() -> list[Kind]:
    mixed = {"x_text.csv": text(300_000, 1), "x_noise.bin": noise(20_000, 2), "x_empty.txt": b"",
             "x_tiny.txt": b"0123456789", "x Ölplattform_測試.csv": text(5000, 3)}
    return [
        Kind("in-memory", mixed),
        Kind("streaming", {**mixed, "x_big.csv": text(3 * MiB, 4), "x_random.bin": noise(2 * MiB + 1, 5)}),
        Kind("threaded", {"x_big.csv": text(9 * MiB + 3, 6), "x_random.bin": noise(5 * MiB, 7),
                          "x_tiny.txt": b"t"}, workers=2),
        Kind("stored", mixed, compression="stored"),
        Kind("bzip2", {**mixed, "x_big.csv": text(2 * MiB, 8)}, compression="bzip2"),
        Kind("lzma", {**mixed, "x_big.csv": text(2 * MiB, 9)}, compression="lzma"),
        Kind("reproducible", {**mixed, "x_big.csv": text(5 * MiB, 10)}, reproducible=True, workers=2),
        # a re-run: the csv members of the first run are carried over as stored bytes
        Kind("merged", {**mixed, "x_big.csv": text(2 * MiB, 11)}, first=("csv",)),
    ]


KINDS = {k.name: k for k in _kinds()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Kind]:
    """Every kind's archive, written once for the module from sources with odd-second mtimes
    and (as root) owner 1234:5678."""
    base = tmp_path_factory.mktemp("interop")
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    for i, kind in enumerate(KINDS.values()):
        src = base / kind.name / "src"
        src.mkdir(parents=True)
        for j, (name, data) in enumerate(sorted(kind.files.items())):
            (src / name).write_bytes(data)
            t = 1_600_000_001 + 86_400 * 40 * j + 3 * i  # odd seconds, winter and summer
            os.utime(src / name, (t, t))
            if os.geteuid() == 0:
                os.chown(src / name, 1234, 5678)
        runs = [list(kind.first), [e for e in ("csv", "bin", "txt") if e not in kind.first]] \
            if kind.first else [["csv", "bin", "txt"]]
        for exts in runs:
            rep = zipkit.zip_by_extension(src, exts, base / kind.name / "out", stems=["x"],
                                          progress=False, **{"workers": 1, **kind.options})
            assert rep.success, rep.failed
        assert rep.ok[0].carried == (sum(n.endswith(kind.first) for n in kind.files) if kind.first else 0)
        kind.src, kind.archive = src, base / kind.name / "out" / "x.zip"
        kind.compressor = rep.ok[0].compressor
    assert KINDS["threaded"].compressor.endswith("x2") and KINDS["reproducible"].compressor.endswith("x2")
    return KINDS


def check_test_clean(reader: str, archive: Path) -> None:
    """The reader's own integrity test passes without a warning."""
    exe = need(reader)
    if reader == "unzip":
        r = run([exe, "-t", str(archive)])
        assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout + r.stderr
    elif reader == "7zz":
        r = run([exe, "t", str(archive)])
        assert r.returncode == 0 and "Everything is Ok" in r.stdout, r.stdout + r.stderr
        assert "WARNING" not in r.stdout.upper().replace("WARNINGS: 0", ""), r.stdout
    else:  # libarchive has no test mode: decompress every member (CRCs checked), output dropped
        r = subprocess.run([exe, "-xOf", str(archive)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, errors="replace", timeout=600)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
        return
    assert "warning" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def listed(reader: str, archive: Path) -> list[str]:
    exe = need(reader)
    if reader == "unzip":
        r = run([exe, "-Z1", str(archive)])
        names = r.stdout.splitlines()
    elif reader == "7zz":
        r = run([exe, "l", "-slt", "-ba", str(archive)])
        names = [ln[len("Path = "):] for ln in r.stdout.splitlines() if ln.startswith("Path = ")]
    else:
        r = run([exe, "-tf", str(archive)])
        names = r.stdout.splitlines()
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    return names


def extract(reader: str, archive: Path, into: Path, tz: str) -> None:
    exe = need(reader)
    into.mkdir(parents=True)
    if reader == "unzip":
        argv = [exe, "-X", "-q", str(archive), "-d", str(into)]  # -X: restore uid/gid (root)
    elif reader == "7zz":
        argv = [exe, "x", "-bso0", "-bsp0", f"-o{into}", str(archive)]
    else:
        argv = [exe, "-xf", str(archive), "-C", str(into)]
    r = run(argv, tz=tz)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    assert "warning" not in r.stdout.lower(), r.stdout


def skip_unsupported(reader: str, kind: Kind) -> None:
    why = UNSUPPORTED.get((reader, kind.method))
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_tests_and_lists_every_kind_cleanly(built, kind, reader):
    k = built[kind]
    skip_unsupported(reader, k)
    check_test_clean(reader, k.archive)
    assert sorted(listed(reader, k.archive)) == sorted(k.files)


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", KINDS)
def test_extracting_in_another_time_zone_restores_bytes_and_exact_mtimes(built, kind, reader, tz,
                                                                        tmp_path):
    k = built[kind]
    skip_unsupported(reader, k)
    extract(reader, k.archive, tmp_path / "x", tz)
    got = {p.name: p for p in (tmp_path / "x").iterdir()}
    assert sorted(got) == sorted(k.files)
    for name, data in k.files.items():
        assert got[name].read_bytes() == data, name
        st, src = got[name].stat(), (k.src / name).stat()
        want = EPOCH if k.options.get("reproducible") else int(src.st_mtime)
        assert int(st.st_mtime) == want, (name, st.st_mtime, want)
        if os.geteuid() == 0 and reader in ("unzip", "bsdtar"):  # 7-Zip does not restore owners
            want_owner = (0, 0) if k.options.get("reproducible") else (1234, 5678)
            assert (st.st_uid, st.st_gid) == want_owner, name


def test_unzip_without_x_leaves_the_extracting_user_as_owner(built, tmp_path):
    """The owner is restored only when asked for (``-X``), as with Info-ZIP's own archives."""
    exe = need("unzip")
    (tmp_path / "x").mkdir()
    r = run([exe, "-q", str(built["in-memory"].archive), "-d", str(tmp_path / "x")])
    assert r.returncode == 0, r.stderr
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in (tmp_path / "x").iterdir()}
    assert owners == {(os.getuid(), os.getgid())}


def test_unzip_cannot_read_lzma_members_which_is_why_it_is_skipped_for_them(built, tmp_path):
    """Keeps the skip above honest: the day unzip reads LZMA, this fails and the skip goes."""
    exe = need("unzip")
    r = run([exe, "-t", str(built["lzma"].archive)])
    assert r.returncode == 81 and "unsupported compression" in r.stdout, r.stdout  # 81: unsupported


def test_members_are_stored_where_compression_does_not_pay_and_readers_agree(built):
    with zipfile.ZipFile(built["streaming"].archive) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
    assert kinds["x_random.bin"] == kinds["x_empty.txt"] == kinds["x_tiny.txt"] == zipfile.ZIP_STORED
    assert kinds["x_big.csv"] == zipfile.ZIP_DEFLATED
    r = run([need("7zz"), "l", "-slt", "-ba", str(built["streaming"].archive)])
    methods = dict(zip([ln[7:] for ln in r.stdout.splitlines() if ln.startswith("Path = ")],
                       [ln[9:] for ln in r.stdout.splitlines() if ln.startswith("Method = ")]))
    assert methods["x_random.bin"] == "Store" and methods["x_big.csv"] == "Deflate", methods


# --- ZIP64: by count and by size (slow; run in CI) ------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zip64_by_count_reads_in_every_reader(tmp_path):
    n = 65_600
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        (src / f"many_{i:05}.dat").write_bytes(b"%d\n" % i)
    rep = zipkit.zip_by_extension(src, "dat", tmp_path / "out", stems=["many"], progress=False)
    assert rep.success, rep.failed
    archive = tmp_path / "out" / "many.zip"
    names = sorted(p.name for p in src.iterdir())
    for reader in READERS:
        check_test_clean(reader, archive)
        assert sorted(listed(reader, archive)) == names, reader
    extract("bsdtar", archive, tmp_path / "x", ZONES[0])
    for name in (names[0], names[-1], names[n // 2]):
        assert (tmp_path / "x" / name).read_bytes() == (src / name).read_bytes()
        assert int((tmp_path / "x" / name).stat().st_mtime) == int((src / name).stat().st_mtime)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zip64_by_size_threaded_member_reads_in_every_reader(tmp_path):
    """A sparse file just over 4 GiB, deflated on two threads (ZIP64 sizes and offsets); each
    reader tests it, and bsdtar's extracted stream equals the source byte for byte."""
    src = tmp_path / "src"
    src.mkdir()
    huge = src / "huge.dat"
    size = (4 << 30) + 4097
    with open(huge, "wb") as f:
        f.truncate(size)
        for at, data in {0: b"start", (1 << 32) - 3: b"across 4 GiB", size - 3: b"end"}.items():
            f.seek(at)
            f.write(data)
    (src / "huge.log").write_bytes(b"the log of a big run\n")
    os.utime(huge, (1_600_000_001, 1_600_000_001))
    try:
        rep = zipkit.zip_by_extension(src, ["dat", "log"], tmp_path / "out", workers=2, progress=False)
        assert rep.success and rep.ok[0].compressor.endswith("x2"), rep.failed
        archive = tmp_path / "out" / "huge.zip"
        for reader in READERS:
            check_test_clean(reader, archive)
            assert sorted(listed(reader, archive)) == ["huge.dat", "huge.log"], reader
        out = subprocess.Popen([need("bsdtar"), "-xOf", str(archive), "huge.dat"], stdout=subprocess.PIPE)
        same = subprocess.run(["cmp", "-", str(huge)], stdin=out.stdout, capture_output=True)
        out.stdout.close()
        assert out.wait() == 0 and same.returncode == 0, same.stdout
        r = run([need("unzip"), "-Z", "-v", str(archive), "huge.dat"], tz=ZONES[1])
        assert "2020 Sep 13 12:26:41 UTC" in r.stdout, r.stdout  # the exact mtime, in 0x5455
    finally:
        huge.unlink()
