"""One check per kind of value, the same in the library, the CLI, the YAML config and the form.

A value that passes a type check but cannot work (NaN, inf, 1e10 s, a negative size, a billion
workers, an epoch a zip cannot store, a boolean for a number, text for a number) is refused
before any work, with one line naming the option or key and the unit; the CLI exits 2 and no
output folder is made. Values at the documented bounds work end to end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import zipkit
from zipkit import ConfigError, UsageError
from zipkit import _options as opt
from zipkit._config import MAX_CONFIG_BYTES, MAX_YAML_VALUES, load_config

NAN, INF = float("nan"), float("inf")
HUGE = 10**400  # an int no float can hold
SECONDS_MSG = "must be a finite number of seconds >= 0.001 and at most 604800 (1 week)"
KIB_MSG = "must be a finite number of KiB >= 0 and at most 9007199254740992"
WORKERS_MSG = "must be 'auto' or an integer from 1 to 4096"
EPOCH_MSG = "must be an integer number of seconds since 1970 from 315532800 (1980-01-01) to 4354819199"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    for s in ("run1", "run2", "run10"):
        for ext in ("dat", "log"):
            (d / f"{s}.{ext}").write_text(f"{s} {ext}\n" * 50)
    return d


def zk(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zipkit", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


# --------------------------------------------------------------------------- the converters
@pytest.mark.parametrize(("kind", "good", "bad"), [
    (opt.SECONDS, [1, 0.001, 2.5, 604800, 604800.0],
     [NAN, INF, -INF, 0, 0.0, -1, 604800.5, 1e10, 9.3e9, HUGE, True, False, "5", [1]]),
    (opt.KIB, [0, 0.0, 1, 2.5, 2**53],
     [NAN, INF, -1, -0.001, 2**53 + 1, 1e300, HUGE, True, "10"]),
    (opt.WORKERS, ["auto", 1, 2, 4096],
     [0, -1, 4097, 10**9, HUGE, True, 2.0, "AUTO", "2", NAN]),
    (opt.LEVEL, [0, 5, 9], [-1, 10, True, 5.0, "5", NAN]),
    (opt.EPOCH, [315532800, 1700000000, 4354819199],
     [315532799, 4354819200, 99999999999999999999, -1, True, 1.7e9, "1700000000"]),
])
def test_each_converter_takes_its_range_and_refuses_the_rest(kind, good, bad):
    for v in good:
        assert kind(v, "x") == v
    for v in bad:
        with pytest.raises(UsageError, match=r"^x must be ") as info:
            kind(v, "x")
        assert isinstance(info.value, opt.BadValue) and info.value.name == "x"
        assert "\n" not in str(info.value)
    assert kind(None, "x") is None  # None is "not set"


@pytest.mark.parametrize(("kind", "text", "value"), [
    (opt.SECONDS, "2.5", 2.5), (opt.SECONDS, " 7 ", 7.0), (opt.KIB, "0", 0.0), (opt.KIB, "1e3", 1000.0),
    (opt.WORKERS, "auto", "auto"), (opt.WORKERS, "8", 8), (opt.LEVEL, "9", 9),
    (opt.EPOCH, "1700000000", 1700000000),
])
def test_command_line_text_is_parsed_then_checked_the_same_way(kind, text, value):
    assert kind.from_text(text, "--x") == value


@pytest.mark.parametrize(("kind", "text"), [
    (opt.SECONDS, "nan"), (opt.SECONDS, "inf"), (opt.SECONDS, "1e10"), (opt.SECONDS, "-1"),
    (opt.SECONDS, "soon"), (opt.KIB, "nan"), (opt.KIB, "-1"), (opt.KIB, "1e400"),
    (opt.WORKERS, "0"), (opt.WORKERS, "1000000000"), (opt.WORKERS, "many"), (opt.WORKERS, "2.0"),
    (opt.LEVEL, "12"), (opt.EPOCH, "99999999999999999999"), (opt.EPOCH, "1_700_000_000"),
    (opt.EPOCH, "1.7e9"), (opt.EPOCH, "\u0661\u0667"),  # Arabic-Indic digits: int() would take them
])
def test_bad_command_line_text_is_named_as_given(kind, text):
    with pytest.raises(opt.BadValue, match=r"^--x must be .*, not ") as info:
        kind.from_text(text, "--x")
    assert repr(text) in str(info.value)


def test_the_timeout_bound_is_below_what_setitimer_and_threading_take():
    """The documented maximum must work where the timeout is used; 1e10 s does not."""
    assert opt.MAX_TIMEOUT < threading.TIMEOUT_MAX
    old = signal.setitimer(signal.ITIMER_REAL, opt.MAX_TIMEOUT + 0.05, 0.25)
    try:
        assert signal.getitimer(signal.ITIMER_REAL)[0] > opt.MAX_TIMEOUT
        with pytest.raises(OverflowError):
            signal.setitimer(signal.ITIMER_REAL, 1e10, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old)
    with pytest.raises(OverflowError):
        threading.Event().wait(1e10)


def test_extensions_regex_choices_and_size_range():
    assert opt.EXTENSIONS(["CSV", ".out", "csv", "tar.gz"], "e") == ("tar.gz", "csv", "out")
    for bad, words in (([], "give at least one"), (["a/b"], "invalid extension"), (["*"], "invalid"),
                       ([3], "expected text"), ([""], "invalid extension"), (5, "must be")):
        with pytest.raises(opt.BadValue, match=words):
            opt.EXTENSIONS(bad, "e")
    assert opt.REGEX(["^a", "b$"], "regex") == "(?:^a)|(?:b$)"
    assert opt.REGEX("", "regex") is None and opt.REGEX([], "regex") is None
    with pytest.raises(opt.BadValue, match=r"regex: '\(' is not a valid regular expression"):
        opt.REGEX("(", "regex")
    with pytest.raises(opt.BadValue, match="did you mean 'always'"):
        opt.choice("allways", ("always", "never"), "overwrite")
    with pytest.raises(opt.BadValue, match="must be one of always, never, not 1"):
        opt.choice(1, ("always", "never"), "overwrite")
    assert opt.kib_range(1, 1) == (1, 1)
    with pytest.raises(opt.BadValue, match=r"min_size_kb must be at most max_size_kb \(1 KiB\), not 2 KiB"):
        opt.kib_range(2, 1)


@pytest.mark.parametrize(("compression", "levels"), [
    ("deflate", range(0, 10)), ("lzma", range(0, 10)), ("bzip2", range(1, 10)), ("stored", range(0, 1))])
def test_one_level_table_for_every_compression(compression, levels):
    for level in range(-2, 12):
        if level in levels:
            assert opt.compression_level(level, compression) == level
        else:
            with pytest.raises(opt.BadValue, match=f"level for {compression} must be"):
                opt.compression_level(level, compression)


# --------------------------------------------------------------------------- the library
LIBRARY_BAD = [
    ("timeout", NAN, SECONDS_MSG + ", not nan"),
    ("timeout", INF, SECONDS_MSG + ", not inf"),
    ("timeout", 1e10, SECONDS_MSG),
    ("timeout", HUGE, SECONDS_MSG + ", not an integer of 401 digits"),
    ("timeout", True, SECONDS_MSG + ", not a boolean (True)"),
    ("timeout", "5", SECONDS_MSG + ", not '5'"),
    ("timeout", -1, SECONDS_MSG),
    ("min_size_kb", NAN, "min_size_kb " + KIB_MSG + ", not nan"),
    ("max_size_kb", -1, "max_size_kb " + KIB_MSG + ", not -1"),
    ("max_size_kb", INF, "max_size_kb " + KIB_MSG),
    ("min_size_kb", True, "min_size_kb " + KIB_MSG + ", not a boolean"),
    ("level", 10, "level for deflate must be an integer from 0 to 9, not 10"),
    ("level", True, "level for deflate must be an integer from 0 to 9, not a boolean (True)"),
    ("regex", "(", "regex: '(' is not a valid regular expression"),
    ("compression", "zstd", "compression must be one of deflate, stored, bzip2, lzma, not 'zstd'"),
    ("match", "substring", "match must be one of prefix, contains"),
    ("deflate_backend", "igzip", "deflate_backend must be one of auto, zlib, isal"),
    ("extensions", ["dat", "*"], "extensions: invalid extension '*'"),
]


@pytest.mark.parametrize(("key", "value", "message"), LIBRARY_BAD)
def test_plan_and_zip_by_extension_refuse_before_any_work(src, tmp_path, key, value, message):
    kw = {"extensions": ["dat"], "stems_from": src, "stem_extensions": ["dat"], key: value}
    out = tmp_path / "out"
    for call in (zipkit.plan, zipkit.zip_by_extension):
        with pytest.raises(UsageError) as info:
            call(src, output=out, **kw)
        assert message in str(info.value)
        assert "\n" not in str(info.value)
    # checked before the folders: a missing source does not hide the bad value
    with pytest.raises(UsageError, match="must be|invalid|not a valid"):
        zipkit.plan(tmp_path / "missing", output=out, **kw)
    assert not out.exists()


def test_size_filters_min_above_max_are_refused_by_the_library(src, tmp_path):
    with pytest.raises(UsageError, match="min_size_kb must be at most max_size_kb"):
        zipkit.plan(src, ["dat"], tmp_path / "out", stems_from=src, stem_extensions=["log"],
                    min_size_kb=5, max_size_kb=1)


def test_nan_size_filter_does_not_turn_the_filter_off(src, tmp_path):
    """NaN compares false with everything: taken as a bound it selected every marker."""
    with pytest.raises(UsageError, match="min_size_kb"):
        zipkit.plan(src, ["dat"], stems_from=src, stem_extensions=["log"], min_size_kb=NAN)
    p = zipkit.plan(src, ["dat"], stems_from=src, stem_extensions=["log"], min_size_kb=1e6,
                    allow_empty=True)
    assert p.stems == ()  # a real bound does filter


@pytest.mark.parametrize("workers", [0, -1, 4097, 1_000_000_000, True, 2.0, "many", HUGE])
def test_run_plan_and_zip_by_extension_refuse_bad_workers_before_any_work(src, tmp_path, workers):
    out = tmp_path / "out"
    p = zipkit.plan(src, ["dat"], out)
    for call in (lambda: zipkit.run_plan(p, workers=workers, progress=False),
                 lambda: zipkit.run_plan(p, workers=workers, progress=False, executor=ThreadPoolExecutor(1)),
                 lambda: zipkit.zip_by_extension(src, ["dat"], out, workers=workers, progress=False)):
        with pytest.raises(UsageError, match=re.escape(WORKERS_MSG)):
            call()
    assert not out.exists()


@pytest.mark.parametrize("raw", ["99999999999999999999", "-1", "315532799", "4354819200", "1.7e9", "soon",
                                 "1_700_000_000", " "])
def test_bad_source_date_epoch_is_refused_up_front_when_reproducible(src, tmp_path, monkeypatch, raw):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", raw)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=re.escape("SOURCE_DATE_EPOCH " + EPOCH_MSG)):
        zipkit.zip_by_extension(src, ["dat"], out, reproducible=True, progress=False)
    assert not out.exists()
    zipkit.plan(src, ["dat"], out)  # not reproducible: the variable is not used, so not checked


@pytest.mark.parametrize(("epoch", "stamp"), [(opt.EPOCH_MIN, (1980, 1, 1, 0, 0, 0)),
                                              (opt.EPOCH_MAX, (2107, 12, 31, 23, 59, 58))])
def test_the_epoch_bounds_are_what_a_zip_stores(src, tmp_path, monkeypatch, epoch, stamp):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    report = zipkit.zip_by_extension(src, ["dat"], tmp_path / "out", reproducible=True, progress=False,
                                     workers=1)
    assert report.success
    with zipfile.ZipFile(tmp_path / "out" / "run1.zip") as zf:
        assert [i.date_time for i in zf.infolist()] == [stamp]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_longest_timeout_works_in_process_and_in_a_pool(src, tmp_path, workers):
    report = zipkit.zip_by_extension(src, ["dat", "log"], tmp_path / "out", timeout=opt.MAX_TIMEOUT,
                                     workers=workers, progress=False)
    assert report.success and len(report.ok) == 3, report


# --------------------------------------------------------------------------- the CLI
CLI_BAD = [
    (["--timeout", "nan"], "argument --timeout: " + SECONDS_MSG + ", not 'nan'"),
    (["--timeout", "inf"], "argument --timeout: " + SECONDS_MSG + ", not 'inf'"),
    (["--timeout", "1e10"], "argument --timeout: " + SECONDS_MSG + ", not '1e10'"),
    (["--timeout", "0"], "argument --timeout: " + SECONDS_MSG),
    (["--min-size-kb", "nan"], "argument --min-size-kb: " + KIB_MSG + ", not 'nan'"),
    (["--max-size-kb", "-1"], "argument --max-size-kb: " + KIB_MSG + ", not '-1'"),
    (["--min-size-kb", "5", "--max-size-kb", "1"], "--min-size-kb must be at most --max-size-kb (1 KiB)"),
    (["-j", "0"], "argument -j/--workers: " + WORKERS_MSG),
    (["-j", "1000000000"], "argument -j/--workers: " + WORKERS_MSG + ", not '1000000000'"),
    (["-l", "12"], "argument -l/--level: must be an integer from 0 to 9, not '12'"),
    (["-c", "bzip2", "-l", "0"], "--level for bzip2 must be an integer from 1 to 9, not 0"),
    (["-c", "stored", "-l", "6"], "--level for stored must be only 0, not 6"),
    (["--regex", "(["], "argument --regex: '([' is not a valid regular expression"),
    (["--ext", "*"], "extensions: invalid extension '*'"),
]


@pytest.mark.parametrize(("args", "message"), CLI_BAD)
def test_cli_refuses_bad_values_with_exit_2_and_one_line(src, tmp_path, args, message):
    out = tmp_path / "out"
    r = zk(str(src), "--ext", "dat", "--stems-from", str(src), "--stem-ext", "log", "-o", str(out),
           "--no-progress", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zipkit: error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()


def test_cli_refuses_an_out_of_range_source_date_epoch_when_reproducible(src, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "99999999999999999999"}
    r = zk(str(src), "--ext", "dat", "-o", str(out), "--reproducible", env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"zipkit: error: SOURCE_DATE_EPOCH {EPOCH_MSG} (2107-12-31), the dates a "
                                f"zip archive stores, not '99999999999999999999'")
    assert not out.exists()
    r = zk(str(src), "--ext", "dat", "-o", str(out), "--no-progress", env=env)  # not reproducible: unused
    assert r.returncode == 0, r.stderr


def test_cli_values_at_the_bounds_run(src, tmp_path):
    r = zk(str(src), "--ext", "dat", "-o", str(tmp_path / "out"), "--timeout", "604800", "-j", "4096",
           "-c", "lzma", "-l", "9", "--no-progress")
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(tmp_path / "out" / "run1.zip") as zf:
        assert zf.infolist()[0].compress_type in (zipfile.ZIP_LZMA, zipfile.ZIP_STORED)
        assert zf.testzip() is None


# --------------------------------------------------------------------------- the config
CONFIG = """\
analysis:
  input_directory: src
  filename: {extension: [dat]}
file_management:
  input_directory: src
  output_directory: out
  filename:
    extension: [log]
"""


def with_filters(filters: str) -> str:
    """CONFIG with marker filters (``"min_size_kb: 1"``)."""
    return CONFIG.replace("    extension: [log]\n", f"    extension: [log]\n    filters: {{{filters}}}\n")


@pytest.mark.parametrize(("yaml_text", "key", "words"), [
    ("parallel_processing: {timeout_per_file: .nan}", "parallel_processing.timeout_per_file",
     SECONDS_MSG + ", not nan; null means no limit"),
    ("parallel_processing: {timeout_per_file: .inf}", "parallel_processing.timeout_per_file", ", not inf"),
    ("parallel_processing: {timeout_per_file: 1.0e+10}", "parallel_processing.timeout_per_file", SECONDS_MSG),
    ("parallel_processing: {timeout_per_file: 99999999999999999999999}",
     "parallel_processing.timeout_per_file", SECONDS_MSG),
    ("parallel_processing: {timeout_per_file: true}", "parallel_processing.timeout_per_file", "a boolean"),
    ("parallel_processing: {timeout_per_file: '5'}", "parallel_processing.timeout_per_file", "not '5'"),
    ("zipkit: {timeout: -.inf}", "zipkit.timeout", SECONDS_MSG),
    ("parallel_processing: {max_workers: 1000000000}", "parallel_processing.max_workers",
     WORKERS_MSG + ", not 1000000000"),
    ("zipkit: {workers: 4097}", "zipkit.workers", WORKERS_MSG),
    ("parallel_processing: {max_workers: 2.0}", "parallel_processing.max_workers", WORKERS_MSG),
    ("filters: min_size_kb: .nan", "file_management.filename.filters.min_size_kb", KIB_MSG + ", not nan"),
    ("filters: max_size_kb: -1", "file_management.filename.filters.max_size_kb", KIB_MSG + ", not -1"),
    ("filters: max_size_kb: false", "file_management.filename.filters.max_size_kb", "a boolean"),
    ("filters: min_size_kb: 3, max_size_kb: 2", "file_management.filename.filters.min_size_kb",
     "min_size_kb must be at most max_size_kb (2 KiB), not 3 KiB"),
    ("zipkit: {level: true}", "zipkit.level", "must be an integer from 0 to 9, not a boolean"),
    ("zipkit: {compression: lzma, level: 10}", "zipkit.level", "must be an integer from 0 to 9, not 10"),
])
def test_config_values_are_checked_by_the_same_converters(tmp_path, yaml_text, key, words):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.dat").write_text("a")
    cfg = tmp_path / "bad.yml"
    filters = yaml_text.removeprefix("filters: ")
    cfg.write_text(with_filters(filters) if filters != yaml_text else CONFIG + yaml_text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    err = info.value
    assert err.key == key and err.path == cfg
    assert str(err).startswith(f"{cfg}: key '{key}': ") and words in str(err), str(err)
    assert "\n" not in str(err)
    r = zk(str(cfg), "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"zipkit: error: {err}"
    assert not (tmp_path / "out").exists()


def test_config_values_at_the_bounds_are_taken(tmp_path):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "c.yml"
    cfg.write_text(with_filters("min_size_kb: 0, max_size_kb: 9007199254740992")
                   + "zipkit: {compression: lzma, level: 9, timeout: 604800, workers: 4096}\n")
    c = load_config(cfg)
    assert (c.plan_kwargs["level"], c.plan_kwargs["timeout"], c.run_kwargs["workers"]) == (9, 604800, 4096)
    assert (c.plan_kwargs["min_size_kb"], c.plan_kwargs["max_size_kb"]) == (0, 2**53)


# --------------------------------------------------------------------------- YAML bounds
def billion_laughs(levels: int = 9) -> str:
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return CONFIG + "meta:\n" + "\n".join(lines) + f"\n  label: *l{levels - 1}\n"


@pytest.mark.parametrize("args", [["--print-config"], [], ["--dry-run"]])
def test_an_alias_bomb_is_refused_at_once(tmp_path, args):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.dat").write_text("a")
    cfg = tmp_path / "bomb.yml"
    cfg.write_text(billion_laughs())  # 9**9 = 387 million strings once expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_VALUES} values once its aliases"):
        load_config(cfg)
    assert time.perf_counter() - t0 < 1.0
    t0 = time.perf_counter()
    r = zk(*args, str(cfg), cwd=tmp_path, timeout=60)
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith(f"zipkit: error: {cfg}: the YAML holds more than")
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    assert took < 10, took  # a process start and a refusal (the unbounded run took minutes)


def test_aliases_within_the_bound_still_work(tmp_path):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "ok.yml"
    text = CONFIG.replace("extension: [dat]", "extension: &e [dat]")
    text = text.replace("extension: [log]", "extension: *e")
    cfg.write_text(text + "meta:\n  a: &a [x, y, z]\n  b: [*a, *a, *a]\n")
    c = load_config(cfg)
    assert c.plan_kwargs["stem_extensions"] == ["dat"] and c.settings["meta"]["b"] == [["x", "y", "z"]] * 3


def test_a_recursive_alias_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "loop.yml"
    cfg.write_text(CONFIG + "meta: &m\n  again: *m\n")
    with pytest.raises(ConfigError, match="refers to a node that holds it"):
        load_config(cfg)


def test_a_config_file_over_one_mib_is_refused_quickly(tmp_path):
    (tmp_path / "src").mkdir()
    big = tmp_path / "big.yml"
    note = "    - a note that makes the config long\n"
    with open(big, "w") as f:  # 50 MB of valid YAML: unbounded, it took a minute to parse
        f.write(CONFIG + "meta:\n  notes:\n")
        f.write(note * (50_000_000 // len(note)))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"larger than 1048576 bytes \(1 MiB\)"):
        load_config(big)
    assert time.perf_counter() - t0 < 1.0
    r = zk(str(big), "--print-config", cwd=tmp_path)
    assert r.returncode == 2 and "larger than 1048576 bytes" in r.stderr and "Traceback" not in r.stderr


def test_a_config_of_exactly_one_mib_is_read(tmp_path):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "edge.yml"
    head = CONFIG + "meta:\n  padding: "
    cfg.write_text(head + "x" * (MAX_CONFIG_BYTES - len(head) - 1) + "\n")
    assert cfg.stat().st_size == MAX_CONFIG_BYTES
    assert len(load_config(cfg).settings["meta"]["padding"]) > 1_000_000
    cfg.write_text(head + "x" * (MAX_CONFIG_BYTES - len(head)) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(cfg)


def test_unsafe_tags_still_get_the_clear_message(tmp_path):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "tag.yml"
    cfg.write_text(CONFIG + "meta: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="YAML tag '!!python/object/apply:os.system'.* refused: configs "
                                          "are read with a safe loader"):
        load_config(cfg)


def test_an_empty_source_date_epoch_is_as_if_unset(src, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
    assert zipkit.plan(src, ["dat"], tmp_path / "out", reproducible=True).options.source_date_epoch is None


def test_a_duplicate_key_is_still_logged_with_its_line(tmp_path, caplog):
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "dup.yml"
    twice = "  input_directory: nowhere\n  input_directory: src\n"
    cfg.write_text(CONFIG.replace("  input_directory: src\n", twice, 1))
    with caplog.at_level("WARNING", logger="zipkit"):
        c = load_config(cfg)
    assert c.settings["analysis.input_directory"] == str(tmp_path / "src")  # the last one wins
    assert "key 'input_directory' appears twice (line 3); the last one is used" in caplog.text
