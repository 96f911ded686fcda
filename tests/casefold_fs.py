"""A real case-insensitive file system for tests: a FUSE passthrough (mfusepy, libfuse 3).

Each path component is looked up as macOS (APFS/HFS+) and Windows shares do: a name that is not
stored as given matches a stored name equal to it after Unicode NFC normalisation and case
folding. Names keep the spelling they were created with and listings show them; creating
``RUN1.zip`` where ``run1.zip`` is stored opens (or, with ``O_EXCL``, refuses) ``run1.zip``.
A rename over an existing file under another spelling replaces it under the stored spelling.

Run as a script (``python casefold_fs.py BACKING MOUNTPOINT``) it serves in the foreground
until unmounted; tests use :func:`casefold_mount`, which runs it in a subprocess.

What it does not emulate: the kernel caches nothing (entry, attribute and negative timeouts
are 0); ``flock`` locks are the kernel's own (per FUSE inode, and two spellings of one file
are two FUSE inodes: a lock taken through ``a`` does not exclude one through ``A``); no
xattrs; ``st_dev`` is the FUSE mount's, ``st_ino`` the backing file's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def fold(name: str) -> str:
    """``name`` as this file system compares it."""
    return unicodedata.normalize("NFC", name).casefold()


def _serve(backing: str, mountpoint: str) -> None:
    import mfusepy
    from mfusepy import FuseOSError, Operations

    class CaseFoldFS(Operations):
        use_ns = True

        def __init__(self, root: str) -> None:
            self.root = root

        def _real(self, path: str) -> str:
            """The backing path of ``path``: each component found as given, else folded."""
            cur = self.root
            for part in path.split("/"):
                if not part:
                    continue
                cand = os.path.join(cur, part)
                if not os.path.lexists(cand):
                    with contextlib.suppress(OSError):
                        key = fold(part)
                        cand = next((os.path.join(cur, n) for n in os.listdir(cur) if fold(n) == key), cand)
                cur = cand
            return cur

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
            attrs = {k: getattr(st, k) for k in ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid",
                                                  "st_size", "st_blocks", "st_blksize")}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return attrs

        def readdir(self, path: str, fh: int) -> list[Any]:
            # with use_ino every entry needs its inode: readdir(3) hides entries whose d_ino is 0
            real = self._real(path)
            here = os.lstat(real)
            out: list[Any] = [(n, {"st_mode": here.st_mode, "st_ino": here.st_ino}, 0) for n in (".", "..")]
            with os.scandir(real) as it:
                for e in it:
                    with contextlib.suppress(OSError):
                        st = e.stat(follow_symlinks=False)
                        out.append((e.name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
            return out

        def readlink(self, path: str) -> str:
            return os.readlink(self._real(path))

        def mknod(self, path: str, mode: int, dev: int) -> int:
            os.mknod(self._real(path), mode, dev)
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            os.mkdir(self._real(path), mode)
            return 0

        def rmdir(self, path: str) -> int:
            os.rmdir(self._real(path))
            return 0

        def unlink(self, path: str) -> int:
            os.unlink(self._real(path))
            return 0

        def symlink(self, target: str, source: str) -> int:  # the link ``target`` holds ``source``
            os.symlink(source, self._real(target))
            return 0

        def link(self, target: str, source: str) -> int:  # ``target``: the new name
            os.link(self._real(source), self._real(target))
            return 0

        def rename(self, old: str, new: str) -> int:
            src, dst = self._real(old), self._real(new)
            if src == dst:  # one file under two spellings: the new spelling is kept, as on macOS
                dst = os.path.join(os.path.dirname(dst), os.path.basename(new))
            os.rename(src, dst)
            return 0

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(self._real(path), mode, follow_symlinks=False)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(self._real(path), uid, gid, follow_symlinks=False)
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._real(path), length)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(self._real(path))
            else:
                os.utime(self._real(path), ns=times, follow_symlinks=False)
            return 0

        def open(self, path: str, flags: int) -> int:
            return os.open(self._real(path), flags & ~(os.O_CREAT | os.O_EXCL))

        def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
            return os.open(self._real(path), flags | os.O_CREAT, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            (os.fdatasync if datasync else os.fsync)(fh)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(self._real(path))
            return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                                 "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

        def access(self, path: str, amode: int) -> int:
            if not os.path.lexists(self._real(path)):
                raise FuseOSError(errno.ENOENT)
            return 0

    # default_permissions: the kernel checks modes against the caller (this server runs as root);
    # timeouts 0: every lookup reaches _real (no dentry of one spelling outlives an unlink);
    # hard_remove: no .fuse_hidden files; use_ino: st_ino is the backing file's (zipkit compares it).
    mfusepy.FUSE(CaseFoldFS(backing), mountpoint, foreground=True, default_permissions=True,
                 hard_remove=True, use_ino=True, entry_timeout=0, attr_timeout=0, negative_timeout=0,
                 fsname="casefoldfs")


def _unmount(mountpoint: Path) -> None:
    for cmd in (["fusermount3", "-u", str(mountpoint)], ["umount", str(mountpoint)],
                ["umount", "-l", str(mountpoint)]):
        if shutil.which(cmd[0]) is None:
            continue
        if subprocess.run(cmd, capture_output=True).returncode == 0 or not os.path.ismount(mountpoint):
            return


@contextlib.contextmanager
def casefold_mount(mountpoint: Path, backing: Path) -> Iterator[Path]:
    """Mount the case-insensitive file system on ``mountpoint`` (files kept in ``backing``).

    Fails the test (never skips) when it cannot be mounted: CI runs as root on a machine with
    FUSE, so a failure here is a broken setup (``apt-get install fuse3``; ``pip install mfusepy``).
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    backing.mkdir(parents=True, exist_ok=True)
    log = mountpoint.with_name(mountpoint.name + ".log")
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, __file__, str(backing), str(mountpoint)],
                                stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"cannot mount the case-insensitive FUSE file system on {mountpoint} "
                            f"(exit {proc.poll()}): {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        yield mountpoint
    finally:
        _unmount(mountpoint)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            _unmount(mountpoint)
    assert not os.path.ismount(mountpoint), f"{mountpoint} is still mounted"


@pytest.fixture
def casefold_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder on a real case-insensitive (and normalisation-insensitive) file system."""
    with casefold_mount(tmp_path / "ci", tmp_path / "ci.backing") as mnt:
        yield mnt


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
