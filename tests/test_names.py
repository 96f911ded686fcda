"""Names: entries the scan skips are listed, names that collide on the output file system are
refused, and a name too long for it fails only its own stem."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from safety_helpers import assert_nothing_lost, member_hashes, snapshot, subprocess_env, write, zipkit_cmd

import zipkit
from zipkit import plan, zip_by_extension


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(zipkit_cmd(*args), capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)


def test_entries_skipped_by_the_scan_are_listed_with_their_reason(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / ".csv", b"a name that is only the extension")
    write(src / ".hidden.csv", b"a dotfile")
    write(src / "a.csv", b"a")
    bad = os.fsencode(str(src)) + b"/bad\xff.csv"
    with open(bad, "wb") as f:
        f.write(b"undecodable name")
    p = plan(src, "csv", tmp_path / "out")
    assert sorted(s.stem for s in p.stems) == [".hidden", "a"]
    reasons = {x.name: why for x, why in p.ignored}
    assert reasons[".csv"] == "no stem: the name is only the extension"
    assert "not valid UTF-8" in reasons[os.fsdecode(b"bad\xff.csv")]
    assert "ignored .csv: no stem" in str(p)
    rep = zipkit.run_plan(p, progress=False)
    assert rep.success and os.path.exists(bad) and (src / ".csv").is_file()


def test_names_that_differ_only_by_normalisation_or_case(tmp_path: Path) -> None:
    from zipkit._refusals import colliding
    from zipkit._refusals import folds as _folds

    nfc, nfd = "caf\u00e9.zip", "cafe\u0301.zip"
    assert colliding([nfc, nfd, "x.zip"], fold_case=False, fold_normalization=True) == [(nfc, nfd)]
    assert colliding(["Run1.zip", "run1.zip"], fold_case=True, fold_normalization=False) == [
        ("Run1.zip", "run1.zip")]
    assert colliding(["Run1.zip", "run1.zip", nfc, nfd], fold_case=False, fold_normalization=False) == []
    # this machine's file systems keep both apart: the probe says so and leaves nothing behind
    assert not _folds(tmp_path, "Aa", "aA") and not _folds(tmp_path, "\u00e9", "e\u0301")
    assert list(tmp_path.iterdir()) == []
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / f"{nfc[:-4]}.dat", b"nfc")
    write(src / f"{nfd[:-4]}.dat", b"nfd")
    write(src / "Run1.dat", b"R")
    write(src / "run1.dat", b"r")
    snap = snapshot(src)
    rep = zip_by_extension(src, "dat", out, progress=False, delete_sources=True)
    assert len(rep.ok) == 4  # on a file system that keeps the names apart, both are archives
    assert_nothing_lost(snap, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".zipkit-probe")]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_over_long_archive_name_fails_only_its_stem(tmp_path: Path, workers: str) -> None:
    """x…x.c (255 bytes) is a valid file name; its archive x…x.zip (257) is not: that stem
    fails with "file name too long" and the name, in-process and pooled; the others are done."""
    src, out = tmp_path / "src", tmp_path / "out"
    long = "x" * 253
    write(src / f"{long}.c", b"long")
    write(src / "ok.c", b"ok")
    snap = snapshot(src)
    r = _cli(src, "--ext", "c", "-o", out, "-j", workers, "--no-progress", "--delete-sources")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "died" not in r.stderr, r.stderr
    assert f"failed: {long}: file name too long: {out / long}.zip" in r.stderr, r.stderr
    assert (src / f"{long}.c").is_file() and sorted(member_hashes(out / "ok.zip")) == ["ok.c"]
    assert_nothing_lost(snap, out)
