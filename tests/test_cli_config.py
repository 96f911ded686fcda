"""``python -m zipkit CONFIG.yml [OVERRIDE]`` in real subprocesses: archives, exit codes, messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import zipkit

THREE_FOLDER = """\
meta:
  library: assetutlities
  basename: zip_utilities
  label: 03c_100yr
default:
  log_level: INFO
  config:
    overwrite:
      output: True
parallel_processing:
  enabled: true
  max_workers: 2
  timeout_per_file: 3600
  save_error_reports: false
  progress_reporting: true
analysis:
  flag: True
  type: zip_by_stem
  by: stem
  input_directory: ../output/csv/03c_100yr
  filename:
    extension: [csv]
analysis_settings:
  flag: True
  type: zip_by_stem
  by: stem
file_management:
  flag: True
  input_directory: ../03c_100yr
  output_directory: ../output/zip/03c_100yr
  filename:
    extension: [yml]
    pattern: NULL
    filters:
      contains: []
      not_contains: []
"""

SCENARIOS = {
    "03c_100yr": {"FST2F_FST1F_LWL_000deg": ["Jacket1", "Strut1"], "FST2L_FST1L_HWL_345deg": ["Jacket1"],
                  "FST2F_FST1F_LWL_000deg_QA": ["Jacket1"]},
    "04c_maintenance": {"M1_000deg": ["a", "b"], "M10_000deg": ["a"], "M2_090deg_QA": ["a"]},
}
OVERRIDE_04C = ("{'meta': {'label': '04c_maintenance'}, "
                "'analysis': {'input_directory': '../output/csv/04c_maintenance'}, "
                "'file_management': {'input_directory': '../04c_maintenance', "
                "'output_directory': '../output/zip/04c_maintenance'}}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for scenario, cases in SCENARIOS.items():
        markers, data = tmp_path / scenario, tmp_path / "output" / "csv" / scenario
        markers.mkdir(parents=True)
        data.mkdir(parents=True)
        for case, parts in cases.items():
            (markers / f"{case}.yml").write_text(f"case: {case}\n")
            for part in parts:
                (data / f"{case}_{part}.csv").write_text(f"{scenario},{case},{part}\n" * 100)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "zip_config.yml").write_text(THREE_FOLDER)
    return tmp_path


def zipkit_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zipkit", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def archives(folder: Path) -> dict[str, tuple[list[str], dict[str, bytes], bytes]]:
    out = {}
    for z in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            out[z.name] = (zf.namelist(), {n: zf.read(n) for n in zf.namelist()}, z.read_bytes())
    return out


def all_zips(root: Path) -> list[Path]:
    return sorted(root.rglob("*.zip"))


# --------------------------------------------------------------------------- runs
def test_config_run_makes_the_same_archives_as_the_library_call(project, tmp_path):
    proc = zipkit_cli("scripts/zip_config.yml", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "3 ok of 3 stem(s)" in proc.stdout
    zipkit.zip_by_extension(project / "output/csv/03c_100yr", ["csv"], tmp_path / "lib",
                            stems_from=project / "03c_100yr", stem_extensions=["yml"], progress=False)
    got = archives(project / "output/zip/03c_100yr")
    assert sorted(got) == ["FST2F_FST1F_LWL_000deg.zip", "FST2F_FST1F_LWL_000deg_QA.zip",
                           "FST2L_FST1L_HWL_345deg.zip"]
    assert got == archives(tmp_path / "lib")


def test_batch_line_with_override_makes_the_same_archives_as_the_library_call(project, tmp_path):
    proc = zipkit_cli("zip_config.yml", OVERRIDE_04C, "--no-progress", cwd=project / "scripts")
    assert proc.returncode == 0, proc.stderr
    zipkit.zip_by_extension(project / "output/csv/04c_maintenance", ["csv"], tmp_path / "lib",
                            stems_from=project / "04c_maintenance", stem_extensions=["yml"], progress=False)
    got = archives(project / "output/zip/04c_maintenance")
    assert sorted(got) == ["M10_000deg.zip", "M1_000deg.zip", "M2_090deg_QA.zip"]
    assert got["M1_000deg.zip"][0] == ["M1_000deg_a.csv", "M1_000deg_b.csv"]  # M10's file not taken
    assert got == archives(tmp_path / "lib")
    assert not (project / "output/zip/03c_100yr").exists()


@pytest.mark.parametrize(("filters", "expected"), [
    ("{'not_contains': ['QA']}", ["FST2F_FST1F_LWL_000deg.zip", "FST2L_FST1L_HWL_345deg.zip"]),
    ("{'contains': ['FST2F']}", ["FST2F_FST1F_LWL_000deg.zip", "FST2F_FST1F_LWL_000deg_QA.zip"]),
    ("{'contains': ['FST2F', 'QA']}", ["FST2F_FST1F_LWL_000deg_QA.zip"]),
])
def test_filters_in_the_override_select_the_stems(project, filters, expected):
    override = f"{{'file_management': {{'filename': {{'filters': {filters}}}}}}}"
    proc = zipkit_cli("scripts/zip_config.yml", override, "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in all_zips(project)] == expected


def test_enabled_false_runs_in_process_and_dash_j_wins(project):
    proc = zipkit_cli("scripts/zip_config.yml", "{'parallel_processing': {'enabled': False}}", "-q",
                      "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "1 worker(s), in-process" in proc.stdout
    proc = zipkit_cli("scripts/zip_config.yml", "{'parallel_processing': {'enabled': False}}", "-q",
                      "--no-progress", "-j", "2", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "2 worker(s), process pool" in proc.stdout


def test_print_config_shows_resolved_settings_and_writes_nothing(project):
    proc = zipkit_cli("--print-config", "scripts/zip_config.yml", OVERRIDE_04C, cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "analysis.input_directory" in out and str(project / "output/csv/04c_maintenance") in out
    assert "[override]" in out and "[config]" in out and "[default]" in out
    assert "workers=2" in out and "timeout=3600" in out and "meta.label: 04c_maintenance" in out
    assert "match='prefix'" in out and "zipkit: {match: contains}" in out
    assert not (project / "output" / "zip").exists()


def test_dry_run_with_a_config_shows_the_plan_and_writes_nothing(project):
    proc = zipkit_cli("scripts/zip_config.yml", OVERRIDE_04C, "--dry-run", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "3 archive(s) to write" in proc.stdout and "M10_000deg" in proc.stdout
    assert not (project / "output" / "zip").exists()


def test_error_report_path_in_config_resolves_beside_it(project):
    """A stem that fails (an unreadable file) gives exit 1 and the JSON report where the config says."""
    unreadable = project / "output/csv/03c_100yr/FST2L_FST1L_HWL_345deg_Jacket1.csv"
    unreadable.chmod(0o000)
    override = "{'parallel_processing': {'save_error_reports': 'errors.json', 'enabled': False}}"
    args = [sys.executable, "-m", "zipkit", "scripts/zip_config.yml", override, "--no-progress"]
    if os.geteuid() == 0:  # CI runs as root: run zipkit without root's permission override
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to test permission errors as root"
        args = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", *args]
    proc = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "FST2L_FST1L_HWL_345deg" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads((project / "scripts" / "errors.json").read_text())
    assert "FST2L_FST1L_HWL_345deg" in json.dumps(report)
    assert [p.name for p in all_zips(project)] == [
        "FST2F_FST1F_LWL_000deg.zip", "FST2F_FST1F_LWL_000deg_QA.zip"]


# --------------------------------------------------------------------------- refusals
def assert_refused(proc: subprocess.CompletedProcess[str], project: Path, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "\n" not in err, err  # one line
    assert err.startswith("zipkit: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for w in words:
        assert w in err, err
    assert all_zips(project) == []
    assert not (project / "output" / "zip").exists()


@pytest.mark.parametrize(("old", "new", "words"), [
    ("max_workers: 2", "max_workers: many",
     ["key 'parallel_processing.max_workers'", "must be 'auto' or an integer from 1 to 4096", "'many'"]),
    ("max_workers: 2", "max_worker: 2",
     ["key 'parallel_processing.max_worker'", "did you mean 'parallel_processing.max_workers'"]),
    ("  output_directory: ../output/zip/03c_100yr",
     "  output_directory: ../output/zip/03c_100yr\n  ouput_dir: x",
     ["key 'file_management.ouput_dir'", "unknown key"]),
    ("input_directory: ../output/csv/03c_100yr", "input_directory: ../output/csv/nope",
     ["key 'analysis.input_directory'", "folder does not exist"]),
    ("extension: [csv]", "extension: [csv", ["not valid YAML", "line "]),
    ("progress_reporting: true", "progress_reporting: true\n\tbad: tab", ["not valid YAML"]),
])
def test_invalid_config_exits_2_with_one_line(project, old, new, words):
    path = project / "scripts" / "zip_config.yml"
    assert old in THREE_FOLDER
    path.write_text(THREE_FOLDER.replace(old, new, 1))
    proc = zipkit_cli("zip_config.yml", cwd=project / "scripts")
    assert_refused(proc, project, str(path), *words)


def test_python_object_tag_is_refused_and_its_payload_never_runs(project):
    marker = project / "PWNED"
    path = project / "scripts" / "zip_config.yml"
    path.write_text(THREE_FOLDER.replace(
        "max_workers: 2", f"max_workers: !!python/object/apply:os.system ['touch {marker}']"))
    proc = zipkit_cli("zip_config.yml", cwd=project / "scripts")
    assert_refused(proc, project, "YAML tag '!!python/object/apply:os.system'", "refused", "line 12")
    assert not marker.exists()
    # the same payload through the override (YAML tags mean nothing there; it is not a literal)
    path.write_text(THREE_FOLDER)
    call = f"__import__('os').system('touch {marker}')"
    for override in (call,
                     f"{{'parallel_processing': {{'max_workers': {call}}}}}",
                     f"{{'analysis': {{'input_directory': exec('open(\"{marker}\", \"w\")')}}}}"):
        proc = zipkit_cli("zip_config.yml", override, cwd=project / "scripts")
        assert_refused(proc, project, "the override is not a Python literal dict", "never evaluated")
        assert not marker.exists()


@pytest.mark.parametrize(("override", "words"), [
    ("{'analysis': {'input_directory': '../x'", ["not a Python literal dict", "was never closed"]),
    ("analysis=1", ["not a Python literal dict"]),
    ("['analysis']", ["the override must be a dict"]),
    ("{'parallel_processing': {'max_workers': 'many'}}",
     ["key 'parallel_processing.max_workers'", "(set by the override)"]),
    ("{'file_managment': {'input_directory': '../04c_maintenance'}}",
     ["key 'file_managment'", "did you mean 'file_management'", "(set by the override)"]),
])
def test_malformed_override_exits_2_with_one_line(project, override, words):
    proc = zipkit_cli("scripts/zip_config.yml", override, cwd=project)
    assert_refused(proc, project, *words)


def test_missing_config_file_exits_2(project):
    proc = zipkit_cli("scripts/missing.yml", cwd=project)
    assert_refused(proc, project, "missing.yml", "config file not found")


def test_direct_mode_options_are_refused_with_a_config(project):
    proc = zipkit_cli("scripts/zip_config.yml", "--compression", "lzma", cwd=project)
    assert_refused(proc, project, "--compression does not apply to a config file", "zipkit.compression")
    proc = zipkit_cli("scripts/zip_config.yml", "-e", "csv", "-o", "x", cwd=project)
    assert_refused(proc, project, "does not apply to a config file")


def test_print_config_of_a_broken_config_exits_2(project):
    broken = THREE_FOLDER.replace("max_workers: 2", "max_workers: []")
    (project / "scripts" / "zip_config.yml").write_text(broken)
    proc = zipkit_cli("--print-config", "scripts/zip_config.yml", cwd=project)
    assert_refused(proc, project, "parallel_processing.max_workers")


def test_direct_mode_still_works_and_yml_folders_are_sources(project):
    folder = project / "data.yml"  # a folder whose name ends in .yml is a source folder, not a config
    folder.mkdir()
    (folder / "r1.dat").write_text("1")
    proc = zipkit_cli("data.yml", "--ext", "dat", "-o", "out", "-q", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (project / "out").iterdir()] == ["r1.zip"]
    proc = zipkit_cli("data.yml", "{'a': 1}", "--ext", "dat", cwd=project)
    assert proc.returncode == 2 and "an override needs a YAML config" in proc.stderr
