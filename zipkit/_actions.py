"""What to do with an archive that is already there, under each ``overwrite`` policy.

The existing archive is data: its directory is read (every CRC too when asked), and a file
there that is not a readable zip archive fails its stem under every policy.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Literal

from ._errors import ExistingArchiveError
from ._merge import read_existing, uncheckable
from ._scan import SourceFile

__all__ = ["Action", "archive_action"]

Action = Literal["create", "merge", "replace", "skip", "fail"]


def _members_word(n: int) -> str:
    return f"{n} member{'s' if n != 1 else ''}"


def archive_action(archive: Path, files: tuple[SourceFile, ...], exists: bool,
                   overwrite: str, check_crc: bool = False,
                   ) -> tuple[Action, str, tuple[str, ...], tuple[str, ...]]:
    """What to do with ``archive``: action, reason, members to keep, members to drop.

    An existing archive is read (its directory; every CRC too when ``check_crc``): anything
    there that is not a readable zip archive fails the stem under every policy.
    """
    if not exists:
        return "create", "", (), ()
    try:
        got = read_existing(archive)
    except ExistingArchiveError as e:
        return "fail", str(e), (), ()
    if got is None:  # gone since the listing
        return "create", "", (), ()
    infos, st = got
    names = {f.name for f in files}
    kept = tuple(i.filename for i in infos if i.filename not in names)
    if overwrite == "never":
        return "skip", "archive exists", (), ()
    if overwrite == "replace":
        return "replace", f"replace: {_members_word(len(kept))} dropped", (), kept
    # a member the merge would carry but cannot check fails the stem: said now, not at run time
    why = next((w for i in infos if i.filename not in names and (w := uncheckable(i, archive))), None)
    merge = f"merge: {_members_word(len(kept))} kept"

    def merging(reason: str) -> tuple[Action, str, tuple[str, ...], tuple[str, ...]]:
        return ("fail", why, (), ()) if why else ("merge", reason, kept, ())

    if overwrite == "always":
        return merging(merge)
    # update: skip only an archive newer than every file of this run that holds all their names
    sizes = {i.filename: i.file_size for i in infos}
    if not names <= set(sizes):
        return merging(f"{merge} (new members)")
    if any(sizes[f.name] != f.size for f in files):
        return merging(f"{merge} (a member's size differs)")
    if any(f.mtime_ns > st.st_mtime_ns for f in files):
        return merging(f"{merge} (a member is newer)")
    if check_crc:  # verify on: trust no archive unread
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
        except (OSError, zipfile.BadZipFile, ValueError, zlib.error, EOFError, RuntimeError,
                NotImplementedError) as e:  # RuntimeError: encrypted; NotImplementedError: a method
            bad = f"? ({type(e).__name__})"
        if bad is not None:  # rebuilt: this run's files replace it, others are checked as carried
            return merging(f"{merge} (existing archive corrupt: bad CRC in {bad})")
    return "skip", "up to date", (), ()
