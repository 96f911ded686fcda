"""What the command line prints, as a new user reads it: quiet is quiet, nothing said twice,
defaults in --help, every row on request, deletions always said, advice only when worth it."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from signal_helpers import default_signals

from zipkit import Report, StemResult
from zipkit._cli import build_parser


def zk(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zipkit", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=default_signals)


def make_stems(folder: Path, n: int, exts=("dat", "log")) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        for ext in exts:
            (folder / f"case{i:03d}.{ext}").write_text(f"case {i} {ext}\n" * 50)
    return folder


def test_quiet_prints_one_line_and_no_progress_bar(tmp_path):
    src = make_stems(tmp_path / "src", 4)
    r = zk(src, "--ext", "dat,log", "-o", tmp_path / "out", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "4 ok of 4" in r.stdout
    assert r.stderr == ""  # no bar (tqdm draws on stderr), no log lines


def test_quiet_still_says_what_was_deleted(tmp_path):
    src = make_stems(tmp_path / "src", 3)
    size = sum(p.stat().st_size for p in src.iterdir())
    r = zk(src, "--ext", "dat,log", "-o", tmp_path / "out", "-q", "--delete-sources")
    assert r.returncode == 0, r.stderr
    assert list(src.iterdir()) == []
    assert f"6 source file(s) deleted ({size / 1024:.1f} KiB)" in r.stdout, r.stdout
    full = zk(make_stems(tmp_path / "src2", 2), "--ext", "dat", "-o", tmp_path / "out2",
              "--delete-sources", "--no-progress")
    assert "2 source file(s) deleted" in full.stdout.splitlines()[0]  # the report's summary line


def test_verbose_log_lines_carry_one_prefix(tmp_path):
    src = make_stems(tmp_path / "src", 2)
    r = zk(src, "--ext", "dat", "-o", tmp_path / "out", "-vv", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "zipkit: " in r.stderr
    assert "zipkit: zipkit:" not in r.stderr


def test_a_failed_stem_is_said_once_on_stderr(tmp_path):
    src = make_stems(tmp_path / "src", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "case001.zip").write_bytes(b"not a zip archive at all")  # never replaced: the stem fails
    for workers in ("1", "2"):
        r = zk(src, "--ext", "dat", "-o", out, "-j", workers, "--no-progress")
        assert r.returncode == 1, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if "case001" in ln]
        assert len(lines) == 1, r.stderr
        assert "case001" in r.stdout  # and in the report's table
        assert (out / "case001.zip").read_bytes() == b"not a zip archive at all"


def _defaults_worth_stating(parser: argparse.ArgumentParser):
    for a in parser._actions:
        if not a.option_strings or a.help in (None, argparse.SUPPRESS):
            continue
        if isinstance(a, (argparse._StoreTrueAction, argparse._CountAction, argparse._VersionAction,
                          argparse._HelpAction)):
            continue
        yield a


def test_help_states_every_default():
    parser = build_parser()
    options = list(_defaults_worth_stating(parser))
    assert {"--overwrite", "--compression", "--workers", "--timeout", "--match"} <= {
        a.option_strings[-1] for a in options}
    missing = [a.option_strings[-1] for a in options
               if a.default not in (None, argparse.SUPPRESS) and "default" not in a.help]
    assert missing == []
    text = zk("--help").stdout
    assert re.search(r"\(default:\s+always\)", text) and re.search(r"\(default:\s+auto\)", text)


def test_dry_run_shows_fifty_rows_then_every_row_with_all(tmp_path):
    src = make_stems(tmp_path / "src", 60, exts=("dat",))
    short = zk(src, "--ext", "dat", "--dry-run")
    assert short.returncode == 0, short.stderr
    assert "case049" in short.stdout and "case050" not in short.stdout
    assert "… 10 more" in short.stdout
    assert "(the table shows 50 of 60 stems; --all shows every one)" in short.stdout
    full = zk(src, "--ext", "dat", "--dry-run", "--all")
    assert all(f"case{i:03d}" in full.stdout for i in range(60))
    assert "more" not in full.stdout and "--all" not in full.stdout and full.stderr == ""
    run = zk(src, "--ext", "dat", "-o", tmp_path / "out", "--all", "--no-progress")
    assert run.returncode == 0 and "case059" in run.stdout


def _result(stem: str, seconds: float) -> StemResult:
    return StemResult(stem, None, (f"{stem}.dat",), 1 << 20, 1 << 19, seconds, "ok",
                      compressor="zlib-6", cpu_seconds=seconds)


def test_tuning_advice_only_after_a_run_worth_tuning():
    quick = Report((_result("a", 0.7),), 0.7, 8, "process pool")
    assert quick.advice is None and "advice" not in str(quick)
    long = Report((_result("a", 30.0),), 30.0, 8, "process pool")
    assert long.advice is not None and "only 1 stem(s) for 8 workers" in long.advice
    assert "advice: " in str(long)


@pytest.mark.parametrize("what", ["--dry-run", "--no-progress"])
def test_a_config_run_accepts_all(tmp_path, what):
    src = make_stems(tmp_path / "src", 2)
    cfg = tmp_path / "job.yml"
    cfg.write_text(f"analysis:\n  input_directory: {src}\n  filename:\n    extension: [dat]\n"
                   f"file_management:\n  output_directory: {tmp_path / 'out'}\n")
    r = zk(cfg, "--all", what)
    assert r.returncode == 0, r.stderr


REPO = Path(__file__).resolve().parent.parent


def test_print_config_works_on_the_shipped_example_whose_folders_are_elsewhere():
    """``--print-config`` shows what a config would do; a folder that does not exist here is
    said, not an error (a run of the same config still stops with exit 2 before any work)."""
    example = REPO / "examples" / "configs" / "basic_config.yml"
    shown = zk(example, "--print-config")
    assert shown.returncode == 0, shown.stderr
    assert "analysis.input_directory: folder does not exist" in shown.stdout
    assert "(does not exist)" in shown.stdout and "zipkit.plan(" in shown.stdout
    ran = zk(example, "--no-progress")
    assert ran.returncode == 2 and "folder does not exist" in ran.stderr
    assert "Traceback" not in ran.stderr + shown.stderr
