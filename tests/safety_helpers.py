"""Helpers of the fault-injection suite: source snapshots, the nothing-lost invariant, real faults.

The invariant every safety test asserts after its run (:func:`assert_nothing_lost`):

* every byte of every snapshotted source file is still either in that file or in a member of the
  same name and the same sha256 inside an archive whose CRCs all check (what
  ``zipfile.ZipFile.testzip()`` checks, done while hashing each member);
* no ``*.zip`` in the output folders is partial or corrupt;
* no ``.zipkit-*.tmp`` temp file is left anywhere under the folders given.

:func:`assert_report_truthful` then checks that the report says what the disk shows, stem by stem.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

CHUNK = 1 << 20
TEMP_GLOB = ".zipkit-*.tmp"
FAULTS = Path(__file__).parent / "faults"
REPO = Path(__file__).resolve().parent.parent


# --- data --------------------------------------------------------------------------------------

_WORDS = [hashlib.sha256(str(i).encode()).hexdigest()[: 3 + i % 9] for i in range(4096)]


def text_bytes(n: int, seed: int = 0) -> bytes:
    """``n`` bytes of text that deflate compresses to about 45 % at zlib's full effort (slowly).

    Built from a pseudo-random 1 MiB block of words, so ``zlib`` level 9 runs at some 30 MB/s:
    a stem of a few tens of MB stays in flight long enough for a fault to hit it mid-archive.
    """
    import random

    rng = random.Random(seed)
    block = " ".join(rng.choice(_WORDS) for _ in range(120_000)).encode()[: 1 << 20]
    reps = n // len(block) + 1
    return (block * reps)[:n]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- snapshots and the invariant ---------------------------------------------------------------

@dataclass(frozen=True)
class FileSnap:
    """A source file as it was before the run: where, how big, what content."""

    path: Path
    size: int
    sha256: str


def _extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """``(offset, length, is_data)`` runs of a file: holes of a sparse file need no reading."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size, True
        return
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:  # the file system cannot tell: read everything left
                yield pos, size - pos, True
                return
            data = size  # a hole up to the end
        if data > pos:
            yield pos, min(data, size) - pos, False
        if data >= size:
            return
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        yield data, min(hole, size) - data, True
        pos = hole


_ZEROS = memoryview(bytes(4 * CHUNK))


def sha256_file(path: str | os.PathLike[str], limit: int | None = None) -> str:
    """sha256 of a file's content (its first ``limit`` bytes when given); holes are not read."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        end = size if limit is None else min(limit, size)
        if end <= 4 * CHUNK:  # small: one read, no extent walk
            data = f.read(end)
            h.update(data)
            return h.hexdigest()
        buf = bytearray(4 * CHUNK)
        view = memoryview(buf)
        for offset, length, is_data in _extents(f.fileno(), end):
            if not is_data:
                while length:
                    n = min(length, len(_ZEROS))
                    h.update(_ZEROS[:n])
                    length -= n
                continue
            f.seek(offset)
            while length:
                n = f.readinto(view[: min(length, len(buf))])
                if not n:  # the file shrank under us: hash what is there
                    return h.hexdigest()
                h.update(view[:n])
                length -= n
    return h.hexdigest()


def snapshot(*folders: Path, recursive: bool = False,
             exclude: Callable[[Path], bool] | None = None) -> dict[Path, FileSnap]:
    """Path, size and sha256 of every regular file (links followed) in ``folders``."""
    out: dict[Path, FileSnap] = {}
    for folder in folders:
        entries = folder.rglob("*") if recursive else folder.iterdir()
        for p in sorted(entries):
            if exclude is not None and exclude(p):
                continue
            try:
                st = p.stat()
            except OSError:
                continue  # a dangling link: it holds no bytes
            if not stat.S_ISREG(st.st_mode):
                continue
            out[p] = FileSnap(p, st.st_size, sha256_file(p))
    return out


_member_cache: dict[tuple[str, int, int, int], dict[str, str]] = {}


def member_hashes(archive: Path) -> dict[str, str]:
    """sha256 of every member of ``archive``; fails the test when a CRC or the structure is bad.

    Reads each member to its end through ``ZipFile.open``, which checks the CRC there: the same
    check as ``ZipFile.testzip()``, with the bytes hashed on the way. An archive file that has
    not changed since it was last checked (same inode, size, mtime) is not read again.
    """
    try:
        st = os.stat(archive)
    except OSError as e:
        raise AssertionError(f"archive {archive} is missing: {e}") from e
    key = (str(archive), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _member_cache:
        return dict(_member_cache[key])
    out: dict[str, str] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                h = hashlib.sha256()
                with zf.open(info) as m:
                    while data := m.read(4 * CHUNK):
                        h.update(data)
                assert info.filename not in out, f"{archive}: member {info.filename} twice"
                out[info.filename] = h.hexdigest()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise AssertionError(f"partial or corrupt archive {archive}: {type(e).__name__}: {e}") from e
    _member_cache[key] = out
    return dict(out)


def temp_files(*folders: Path) -> list[Path]:
    """zipkit temp files (``.zipkit-*.tmp``) anywhere under ``folders``."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += folder.rglob(TEMP_GLOB)
    return sorted(found)


def assert_no_temp_files(*folders: Path) -> None:
    left = temp_files(*folders)
    assert not left, f"temp files left behind: {[str(p) for p in left]}"


def archives_in(*folders: Path) -> dict[Path, dict[str, str]]:
    """Every ``*.zip`` in ``folders`` with its member hashes (each archive CRC-checked)."""
    return {z: member_hashes(z) for folder in folders if folder.is_dir()
            for z in sorted(folder.glob("*.zip"))}


def assert_nothing_lost(
    snap: Mapping[Path, FileSnap],
    *output_folders: Path,
    grown: Iterable[Path] = (),
    removed_by_test: Iterable[Path] = (),
) -> dict[Path, str]:
    """The nothing-lost invariant; returns where each source's bytes are: ``source`` or an archive.

    ``grown``: files the test appended to (their snapshot must still be their prefix);
    ``removed_by_test``: files the test itself deleted or replaced (their bytes are the test's
    loss, not zipkit's).
    """
    grown, removed = set(grown), set(removed_by_test)
    folders = {p.parent for p in snap} | set(output_folders)
    assert_no_temp_files(*folders)
    archives = archives_in(*output_folders)
    index: dict[tuple[str, str], Path] = {}
    for z, members in archives.items():
        for name, digest in members.items():
            index[(name, digest)] = z
    where: dict[Path, str] = {}
    missing = []
    for path, s in snap.items():
        if path in removed:
            continue
        if path.is_file():
            size = path.stat().st_size
            limit = s.size if path in grown else None
            fits = size == s.size or (path in grown and size >= s.size)
            if fits and sha256_file(path, limit) == s.sha256:
                where[path] = "source"
                continue
        z = index.get((path.name, s.sha256))
        if z is not None:
            where[path] = str(z)
            continue
        missing.append(f"{path} ({s.size} bytes)")
    assert not missing, ("bytes lost: in neither their source file nor a verified archive: "
                         + ", ".join(missing))
    return where


def records_of(report: Any) -> list[dict[str, Any]]:
    """A report's per-stem records, whether given a ``Report`` or records already."""
    return report.to_records() if hasattr(report, "to_records") else list(report)


def assert_report_truthful(
    report: Any,
    snap: Mapping[Path, FileSnap],
    source: Path,
    output: Path,
    *,
    preexisting: Mapping[str, str] | None = None,
    grown: Iterable[Path] = (),
    removed_by_test: Iterable[Path] = (),
) -> dict[str, str]:
    """Check, stem by stem, that what the report says is what is on disk; return stem → status.

    ``ok``: the archive is there, holds exactly the stem's files with their snapshot content,
    and ``deleted`` names exactly the sources that are gone. ``skipped``: the archive is there and
    nothing was deleted. ``failed`` / ``timed_out`` / ``cancelled``: nothing deleted, every source
    of the stem intact, and no archive for it, or (``preexisting``: stem → sha256 of the archive
    before the run) the old archive unchanged.
    """
    preexisting = dict(preexisting or {})
    grown, removed = set(grown), set(removed_by_test)
    statuses: dict[str, str] = {}
    for r in records_of(report):
        stem, status, files = r["stem"], r["status"], list(r["files"])
        deleted = set(r.get("deleted") or ())
        statuses[stem] = status
        archive = output / f"{stem}.zip"
        where = f"stem {stem!r} reported {status}"
        if status == "ok":
            assert r["archive"] and Path(r["archive"]) == archive, f"{where} but archive={r['archive']!r}"
            members = member_hashes(archive)
            carried = set(members) - set(files)  # members of an earlier archive, merged
            assert set(files) <= set(members) and len(carried) == r.get("carried", 0), (
                f"{where}: archive holds {sorted(members)}, report says {files} and "
                f"{r.get('carried', 0)} carried over")
            for name in files:
                path = source / name
                s = snap.get(path)
                assert s is not None, f"{where}: {name} was not in the snapshot"
                assert members[name] == s.sha256, f"{where}: member {name} differs from the source as it was"
                if name in deleted:
                    assert not os.path.lexists(path), f"{where}: {name} reported deleted but still there"
                elif path not in removed:
                    assert path.is_file(), f"{where}: {name} gone but not reported deleted"
        elif status == "skipped":
            assert archive.is_file(), f"{where} but {archive} does not exist"
            member_hashes(archive)
            assert not deleted, f"{where} but deleted {sorted(deleted)}"
        else:
            assert status in ("failed", "timed_out", "cancelled"), f"{where}: unknown status"
            assert not deleted, f"{where} but deleted {sorted(deleted)}"
            for name in files:
                path = source / name
                if path in removed:
                    continue
                s = snap[path]
                assert path.is_file(), f"{where} but its source {name} is gone"
                limit = s.size if path in grown else None
                assert sha256_file(path, limit) == s.sha256, f"{where} but its source {name} changed"
            if stem in preexisting:
                assert archive.is_file() and sha256_file(archive) == preexisting[stem], (
                    f"{where} but the archive that existed before the run was changed")
            else:
                assert not archive.exists(), f"{where} but {archive} exists (the report hides it)"
    return statuses


# --- processes ---------------------------------------------------------------------------------

def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every live descendant process of ``pid`` (default: this process)."""
    try:
        return psutil.Process(pid if pid is not None else os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@functools.cache
def _realpath(path: str) -> str:
    return os.path.realpath(path)


def holder_of(paths: Iterable[Path], root: int | None = None,
              exclude: Iterable[int] = ()) -> psutil.Process | None:
    """The descendant process of ``root`` (not in ``exclude``) that has one of ``paths`` open."""
    wanted = {_realpath(str(p)) for p in paths}
    skip = set(exclude)
    for proc in descendants(root):
        if proc.pid in skip:
            continue
        try:
            if any(f.path in wanted for f in proc.open_files()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def is_gone(proc: psutil.Process) -> bool:
    """True when ``proc`` has exited (a zombie that nobody reaped counts as exited)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


def assert_processes_gone(procs: Iterable[psutil.Process], timeout: float = 5.0) -> None:
    procs = list(procs)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(is_gone(p) for p in procs):
        time.sleep(0.05)
    alive = [str(p.pid) for p in procs if not is_gone(p)]
    assert not alive, f"orphan processes still running: {alive}"


def pool_workers(pid: int | None = None) -> list[psutil.Process]:
    """Live descendants of ``pid`` other than multiprocessing's forkserver and resource tracker."""
    root = pid if pid is not None else os.getpid()
    out = []
    for p in descendants(root):
        if is_gone(p):
            continue
        try:
            cmd = " ".join(p.cmdline())
            if p.ppid() == root and ("forkserver" in cmd or "resource_tracker" in cmd):
                continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        out.append(p)
    return out


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live, non-zombie processes whose command line contains ``text``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a zipkit subprocess: the zipkit this test process imports comes first."""
    import zipkit

    env = dict(os.environ)
    pkg_parent = str(Path(zipkit.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def zipkit_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "zipkit", *map(str, args)]


def stop_process_tree(proc: subprocess.Popen) -> None:
    """Kill a subprocess started with ``start_new_session=True`` and everything in its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- privileges and file systems ---------------------------------------------------------------

def without_dac_override() -> list[str]:
    """Command prefix that runs a program without root's right to read any file.

    Empty when not root. As root: ``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    from the bounding set, so the program (still uid 0, still the owner of the test's files)
    gets EACCES on a mode-000 file.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def assert_unreadable(path: Path, prefix: list[str]) -> None:
    """Prove that ``prefix`` really cannot read ``path`` (else the test would prove nothing)."""
    probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(path)!r}, 'rb')"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, (
        f"{path} is still readable under {prefix}: rc={probe.returncode} {probe.stderr[-300:]}")


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size_kib: int, *, loop: bool = True,
                     required: bool = True) -> Iterator[str]:
    """Mount a file system of ``size_kib`` KiB on ``mountpoint`` (a tmpfs; else a loop-mounted ext4).

    Yields the kind mounted. Where neither can be mounted (e.g. without root) it skips, visibly
    (the RLIMIT_FSIZE test covers writes failing at a set byte count on every machine), or, when
    not ``required``, yields ``"plain folder"`` and mounts nothing.
    ``ZIPKIT_TEST_NO_TMPFS=1`` forces the loop fallback, to test it.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    kind = None
    errors = []
    if not os.environ.get("ZIPKIT_TEST_NO_TMPFS"):
        r = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(mountpoint))
        if r.returncode == 0:
            kind = "tmpfs"
        else:
            errors.append(f"tmpfs: {r.stderr.strip()}")
    image = mountpoint.with_name(mountpoint.name + ".img")
    if kind is None and loop:
        with open(image, "wb") as f:
            f.truncate(max(size_kib, 512) * 1024)
        r = _run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-N", "64", str(image))
        if r.returncode == 0:
            r = _run("mount", "-o", "loop", str(image), str(mountpoint))
        if r.returncode == 0:
            kind = "loop"
            with contextlib.suppress(OSError):
                (mountpoint / "lost+found").rmdir()
        else:
            errors.append(f"loop: {r.stderr.strip()}")
            image.unlink()
    if kind is None:
        if not required:
            yield "plain folder"
            return
        pytest.skip("cannot mount a small file system here (" + "; ".join(errors) + ")")
    try:
        yield kind
    finally:
        for _ in range(50):
            if _run("umount", str(mountpoint)).returncode == 0:
                break
            time.sleep(0.1)
        else:
            _run("umount", "-l", str(mountpoint))
        with contextlib.suppress(OSError):
            image.unlink()
