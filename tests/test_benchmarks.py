"""The benchmark scripts work end to end on tiny corpora (no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks import old_tool  # noqa: E402
from benchmarks.corpora import _counter_digit, binary_bytes, build, text_bytes  # noqa: E402
from benchmarks.run import METHODS, _missing  # noqa: E402


def _bench(*args: str, env: dict[str, str] | None = None,
           module: str = "benchmarks.run") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=240)


def _assert_outputs_deleted(corpora: Path, stderr: str) -> None:
    """The run's outputs are deleted in the background after it ends: only the corpora stay."""
    assert "deleting the outputs in the background (pid " in stderr
    deadline = time.monotonic() + 120
    while (left := sorted(p.name for p in corpora.iterdir() if p.name.startswith("."))) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []


@pytest.mark.slow
def test_run_writes_table_and_json_for_every_method(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = _bench("--scale", "0.002", "--repeat", "1", "--only", "startup,codecs,mixed256,small5000",
               "--corpora", str(tmp_path / "c"), "--json", str(out))
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert set(res["cases"]) == {"startup", "codecs", "mixed256", "small5000"}
    assert res["cases"]["startup"]["importtime_ms"] > 0
    assert {"zlib-6", "zlib-1"} <= set(res["cases"]["codecs"]["codecs"])
    for name in ("mixed256", "small5000"):
        case = res["cases"][name]
        expected_skips = {k for k, m in METHODS.items() if _missing(m)}
        assert set(case["skipped"]) == expected_skips
        assert set(case["methods"]) == set(METHODS) - expected_skips
        for key, m in case["methods"].items():
            assert m["error"] is None, (name, key, m["error"])
            assert m["runs"] == 1 and m["median_s"] > 0
            if METHODS[key].archives:
                assert m["archives"] == case["stems"], key
                assert m["output_bytes"] > 0, key
        zk = case["methods"]["zipkit"]
        assert zk["speedup_vs"]["zipkit-j1"] > 0
        if "zip-par" in case["methods"]:
            assert zk["speedup_vs"]["zip-par"] > 0 and zk["size_vs_zip6"] > 0
        assert case["targets"] and all(t["value"] is not None for t in case["targets"]
                                       if "zip" not in t["what"] or "zip-par" in case["methods"])
    assert "== mixed256" in p.stdout and "zipkit, defaults" in p.stdout and "x zipkit -j1" in p.stdout
    assert "== startup" in p.stdout and "== codecs" in p.stdout
    _assert_outputs_deleted(tmp_path / "c", p.stderr)


def test_missing_program_is_skipped_with_a_note(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in ("xargs", "touch"):
        os.symlink(shutil.which(exe) or exe, bin_dir / exe)
    env = {**os.environ, "PATH": str(bin_dir)}
    out = tmp_path / "r.json"
    p = _bench("--scale", "0.002", "--repeat", "1", "--only", "small5000",
               "--methods", "touch,7z-par,zip-par,zipkit", "--corpora", str(tmp_path / "c"),
               "--json", str(out), env=env)
    assert p.returncode == 0, p.stderr
    case = json.loads(out.read_text())["cases"]["small5000"]
    assert set(case["skipped"]) == {"7z-par", "zip-par"}
    assert "not found on PATH" in case["skipped"]["7z-par"]
    assert set(case["methods"]) == {"touch", "zipkit"}
    assert case["methods"]["zipkit"]["archives"] == case["stems"]
    assert "skipped 7z-par: 7zz / 7z / 7za not found on PATH" in p.stdout
    # ratios against a missing baseline are absent, not invented
    assert "zip-par" not in case["methods"]["zipkit"]["speedup_vs"]


def test_failing_or_wrong_methods_are_reported_not_timed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in ("xargs", "touch"):
        os.symlink(shutil.which(exe) or exe, bin_dir / exe)
    # a "zip" that writes junk where the archive should be, and a "7zz" that fails
    (bin_dir / "zip").write_text('#!/bin/sh\nprintf junk > "$4"\n')
    (bin_dir / "7zz").write_text("#!/bin/sh\necho 7zz is broken >&2\nexit 2\n")
    for f in ("zip", "7zz"):
        os.chmod(bin_dir / f, 0o755)
    out = tmp_path / "r.json"
    p = _bench("--scale", "0.002", "--repeat", "2", "--only", "small5000",
               "--methods", "zip-par,7z-par,zipkit", "--corpora", str(tmp_path / "c"), "--json", str(out),
               env={**os.environ, "PATH": str(bin_dir)})
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())["cases"]["small5000"]["methods"]
    assert "unreadable" in m["zip-par"]["error"] and "runs" not in m["zip-par"]
    assert "exit code 123" in m["7z-par"]["error"] and "7zz is broken" in m["7z-par"]["error"]
    assert m["zipkit"]["error"] is None and m["zipkit"]["runs"] == 2
    assert "speedup_vs" in m["zipkit"] and "zip-par" not in m["zipkit"]["speedup_vs"]
    assert "WRONG OUTPUT" in p.stderr and "FAILED" in p.stderr
    assert "error: " in p.stdout


def test_old_tool_matches_by_substring_like_the_old_tool(tmp_path: Path) -> None:
    data, markers, out = tmp_path / "data", tmp_path / "markers", tmp_path / "out"
    data.mkdir()
    markers.mkdir()
    for m in ("case1.yml", "case10.yml", "lonely.yml"):
        (markers / m).write_text("")
    for n in ("case1_a.csv", "case10_a.csv", "xcase1y.CSV", "case1_b.txt"):
        (data / n).write_bytes(n.encode() * 100)
    for workers in (None, 2):
        shutil.rmtree(out, ignore_errors=True)
        done = old_tool.run(str(data), str(markers), str(out), ("csv",), workers=workers)
        assert done == {"case1": 3, "case10": 1, "lonely": 0}
        with zipfile.ZipFile(out / "case1.zip") as zf:
            assert sorted(zf.namelist()) == ["case10_a.csv", "case1_a.csv", "xcase1y.CSV"]
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
            assert zf.read("case1_a.csv") == b"case1_a.csv" * 100
        with zipfile.ZipFile(out / "case10.zip") as zf:
            assert zf.namelist() == ["case10_a.csv"]
        assert not (out / "lonely.zip").exists()


def test_corpora_are_deterministic_reused_and_calibrated(tmp_path: Path) -> None:
    a = build("longtail", tmp_path / "a", 0.002)
    b = build("longtail", tmp_path / "b", 0.002)
    assert a.stems == b.stems and a.total_bytes == b.total_bytes
    for pa in a.paths():
        assert pa.read_bytes() == (b.data / pa.name).read_bytes()
    assert sum(p.stat().st_size for p in a.paths()) == a.total_bytes
    assert sorted(p.stem for p in a.markers.iterdir()) == [s for s, _ in a.stems]
    mtime = a.paths()[0].stat().st_mtime_ns
    again = build("longtail", tmp_path / "a", 0.002)
    assert again == a and a.paths()[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    a.paths()[0].write_bytes(b"changed size")
    build("longtail", tmp_path / "a", 0.002)
    assert a.paths()[0].read_bytes() == b.paths()[0].read_bytes()  # damaged corpus rewritten
    # the content compresses like simulation output: zlib -6 keeps ~0.245 of text, ~0.965 of binary
    text, binary = text_bytes(1 << 20, 5), binary_bytes(1 << 20, 5)
    assert len(text) == len(binary) == 1 << 20
    assert 0.22 < len(zlib.compress(text, 6)) / len(text) < 0.27
    assert 0.95 < len(zlib.compress(binary, 6)) / len(binary) < 0.98
    assert text.count(b"\n") == len(text) // len(text.split(b"\n")[0] + b"\n")


@pytest.mark.parametrize("row0", [0, 7, 99, 12_345, 9_999_995])
def test_counter_digits(row0: int) -> None:
    for rows in (1, 13, 250):
        for k in range(8):
            want = bytes(48 + ((row0 + i) // 10**k) % 10 for i in range(rows))
            assert _counter_digit(row0, rows, k) == want


@pytest.mark.slow
def test_scaling_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    p = _bench("--scale", "0.003", "--workers", "1,2", "--best-of", "1", "--no-zlib", "--corpora",
               str(tmp_path / "c"), "--json", str(out), module="benchmarks.scaling")
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    default = next(k for k in res["seconds"] if k.startswith("zipkit default"))
    assert set(res["seconds"][default]) == {"1", "2"}
    assert all(s > 0 for v in res["seconds"].values() for s in v.values())
    assert res["targets"][0]["value"] > 0
    assert "== scaling on" in p.stdout


def test_floor_reads_every_byte_and_deflates_at_zipkits_level(tmp_path: Path) -> None:
    import zipkit

    c = build("mixed256", tmp_path / "c", 0.002)
    names = [n for _, files in c.stems for n in files]
    # a file of several 1 MiB chunks and a ragged tail, and an empty one: every byte must be read
    (c.data / "run001_long.csv").write_bytes(text_bytes((5 << 20) // 2 + 7, 3))
    (c.data / "run002_empty.csv").write_bytes(b"")
    names += ["run001_long.csv", "run002_empty.csv"]
    (tmp_path / "files.txt").write_text("".join(f"{n}\n" for n in names))
    report = tmp_path / "floor.json"
    p = _bench(str(c.data), "--list", str(tmp_path / "files.txt"), "--workers", "2", "--report", str(report),
               module="benchmarks.floor")
    assert p.returncode == 0, p.stderr
    res = json.loads(report.read_text())
    assert res["workers"] == 2
    rows = {r[0]: r for r in res["files"]}
    assert sorted(rows) == sorted(names)  # each file once, by one of the two processes
    r = zipkit.zip_by_extension(c.data, list(c.extensions), tmp_path / "out", stems_from=c.markers,
                                stem_extensions=["yml"], progress=False)
    assert not r.failed
    members: dict[str, zipfile.ZipInfo] = {}
    for z in (tmp_path / "out").glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            members.update((i.filename, i) for i in zf.infolist())
    assert set(members) == set(rows)
    for name, (_, crc, size, packed) in rows.items():
        data = (c.data / name).read_bytes()
        assert (crc, size) == (zlib.crc32(data), len(data)) == (members[name].CRC, members[name].file_size)
        if members[name].compress_type == zipfile.ZIP_DEFLATED:  # the same level as zipkit's default
            assert packed == members[name].compress_size, name
    # in one process too, and through chunks smaller than the files
    from benchmarks.floor import deflate_files, share

    small_chunks = deflate_files(str(c.data), ["run001_long.csv"], 3, chunk=4096)
    assert small_chunks[0][:3] == rows["run001_long.csv"][:3]
    parts = share({"a": 5, "b": 4, "c": 3, "d": 3}, 2)
    assert sorted(parts) == [["a", "d"], ["b", "c"]]


def test_issue17_selection_prints_one_target_table_and_writes_json(tmp_path: Path) -> None:
    from benchmarks.issue17 import CASES

    out = tmp_path / "i17.json"
    sizes = ("--scale", "0.002", "--scale-sizes", "200,400", "--corpora", str(tmp_path / "c"))
    prepared = _bench(*sizes, "--prepare", module="benchmarks.issue17")
    assert prepared.returncode == 0, prepared.stderr
    assert prepared.stdout.count("writing") == len(CASES) + 4 and not out.exists()
    p = _bench(*sizes, "--repeat", "1", "--scale-repeat", "1", "--json", str(out),
               module="benchmarks.issue17")
    assert p.returncode == 0, p.stderr
    assert "writing" not in p.stderr  # the prepared corpora are reused: the timed run writes none
    res = json.loads(out.read_text())
    assert list(res["cases"]) == [*CASES, "scale"]
    for case, keys in CASES.items():
        r = res["cases"][case]
        assert r["skipped"] == {}, r["skipped"]  # fastzip (extra "bench"), zip and isal are all installed
        assert set(r["methods"]) == set(keys)
        for key, m in r["methods"].items():
            assert m["error"] is None and m["runs"] == 1 and m["median_s"] > 0, (case, key, m)
    mixed = res["cases"]["mixed256"]
    assert mixed["methods"]["fastzip"]["archives"] == mixed["stems"]  # checked like every archiver
    assert mixed["methods"]["floor"]["output_bytes"] == 0  # the floor writes nothing
    floor_target = next(t for t in mixed["targets"] if "compute floor" in t["what"])
    zk, fl = mixed["methods"]["zipkit"]["median_s"], mixed["methods"]["floor"]["median_s"]
    assert floor_target["op"] == "<=" and floor_target["limit"] == 1.15
    assert abs(floor_target["value"] - zk / fl) < 1e-9
    assert [t["limit"] for t in res["cases"]["huge"]["targets"]] == [1.85]
    scale = res["cases"]["scale"]
    assert set(scale["rows"]) == {"one-stem/scandir", "one-stem/plan", "one-stem/run", "one-stem/zip-r",
                                  "pairs/scandir", "pairs/plan", "pairs/run"}
    for row in scale["rows"].values():
        assert set(row) == {"200", "400"}
        assert "growth" not in row["200"] and row["400"]["growth"] > 0
        assert all(v["median_s"] > 0 < v["peak_rss_bytes"] and v["us_per_file"] > 0 for v in row.values())
    assert {t["limit"] for t in scale["targets"]} >= {2, 500, 1.0, 150}
    assert all(t["value"] is not None for t in scale["targets"])
    text = p.stdout
    assert "== issue 17 targets on" in text and "elapsed" in text and " met" in text
    assert "== scale: tiny files" in text and "us/file" in text and "peak MiB" in text
    table = text[text.index("== issue 17 targets"):].splitlines()
    assert table[1].split() == ["case", "target", "measured", "fastest", "runs", "want", "met"]
    judged = [ln for ln in table[2:] if ln.rstrip().endswith((" yes", " NO"))]
    measured = [t for r in res["cases"].values() for t in r["targets"] if t["value"] is not None]
    assert len(judged) == len(measured)
    assert any(ln.startswith("info") and "fastzip" in ln for ln in table)
    _assert_outputs_deleted(tmp_path / "c", p.stderr)
    again = _bench("--show", str(out), module="benchmarks.issue17")
    assert again.returncode == 0 and again.stdout.strip().endswith(text.strip().splitlines()[-1])


def test_scale_case_reports_a_failing_measurement_and_goes_on(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zip").write_text("#!/bin/sh\necho zip is broken >&2\nexit 3\n")
    os.chmod(bin_dir / "zip", 0o755)
    out = tmp_path / "s.json"
    p = _bench("--sizes", "100,200", "--repeat", "2", "--corpora", str(tmp_path / "c"), "--json", str(out),
               module="benchmarks.scale", env={**os.environ, "PATH": str(bin_dir)})
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert set(res["errors"]) == {"one-stem/zip-r/100", "one-stem/zip-r/200"}
    assert "exit code 3: zip is broken" in res["errors"]["one-stem/zip-r/100"]
    assert p.stderr.count("FAILED") == 2  # not run again in the second round
    assert "one-stem/zip-r" not in res["rows"]
    assert all(len(v["runs"]) == 2 for row in res["rows"].values() for v in row.values())
    zip_target = next(t for t in res["targets"] if "zip -r" in t["what"])
    assert zip_target["value"] is None and zip_target["ok"] is None  # n/a, not invented
    assert "one-stem/zip-r/100: error: exit code 3" in p.stdout
    _assert_outputs_deleted(tmp_path / "c", p.stderr)
    # the trees are reused by the next run, not written again
    again = _bench("--sizes", "100", "--repeat", "1", "--corpora", str(tmp_path / "c"), "--json", str(out),
                   module="benchmarks.scale")
    assert again.returncode == 0 and "writing" not in again.stderr
