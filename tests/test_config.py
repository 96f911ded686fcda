"""Old zip_utilities YAML configs through the library: load_config, run_config, settings_to_yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import zipkit
from zipkit import ConfigError, UsageError
from zipkit._config import SCHEMA, load_config, run_config, schema_reference_markdown, settings_to_yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "configs"

CASES = {
    "FST2F_FST1F_LWL_000deg": ["Jacket1", "Strut1", "Strut2"],
    "FST2L_FST1L_HWL_345deg": ["Jacket1", "Strut1"],
    "FST2F_FST1F_LWL_000deg_QA": ["Jacket1"],
    "draft_case": ["Jacket1"],
}


def make_scenario(root: Path, scenario: str, cases: dict[str, list[str]] = CASES) -> None:
    """Markers in root/scenario, data in root/output/csv/scenario (the old three-folder layout)."""
    markers, data = root / scenario, root / "output" / "csv" / scenario
    markers.mkdir(parents=True)
    data.mkdir(parents=True)
    for i, (case, parts) in enumerate(sorted(cases.items())):
        (markers / f"{case}.yml").write_text(f"case: {case}\n" + "pad: x\n" * (40 * i))
        for part in parts:
            (data / f"{case}_{part}.csv").write_text(f"{scenario},{case},{part}\n" * (50 + i))
    (data / "unrelated.csv").write_text("no case\n")


def write_config(folder: Path, text: str, name: str = "zip_config.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


THREE_FOLDER = """\
meta: {library: assetutlities, basename: zip_utilities, label: 03c_100yr}
default:
  log_level: INFO
  config: {overwrite: {output: True}}
parallel_processing: {enabled: true, max_workers: 2, save_error_reports: false, progress_reporting: false}
analysis:
  flag: True
  type: zip_by_stem
  by: stem
  input_directory: ../output/csv/03c_100yr
  filename: {extension: [csv]}
analysis_settings: {flag: True, type: zip_by_stem, by: stem}
file_management:
  flag: True
  input_directory: ../03c_100yr
  output_directory: ../output/zip/03c_100yr
  filename:
    extension: [yml]
    pattern: NULL
    filters: {contains: [], not_contains: []}
"""


def archives(folder: Path) -> dict[str, tuple[list[str], dict[str, bytes], bytes]]:
    """Every archive in ``folder``: member names in order, member bytes, and the file's bytes."""
    out = {}
    for z in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            out[z.name] = (zf.namelist(), {n: zf.read(n) for n in zf.namelist()}, z.read_bytes())
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_scenario(tmp_path, "03c_100yr")
    make_scenario(tmp_path, "04c_maintenance", {"M1_000deg": ["a", "b"], "M2_090deg": ["a"]})
    write_config(tmp_path / "scripts", THREE_FOLDER)
    return tmp_path


# --------------------------------------------------------------------------- same archives
def test_three_folder_config_makes_the_same_archives_as_the_library_call(project, tmp_path):
    report = run_config(project / "scripts" / "zip_config.yml")
    assert not report.failed
    lib = zipkit.zip_by_extension(project / "output/csv/03c_100yr", ["csv"], tmp_path / "lib",
                                  stems_from=project / "03c_100yr", stem_extensions=["yml"],
                                  workers=2, progress=False)
    got, want = archives(project / "output/zip/03c_100yr"), archives(tmp_path / "lib")
    assert sorted(got) == ["FST2F_FST1F_LWL_000deg.zip", "FST2F_FST1F_LWL_000deg_QA.zip",
                           "FST2L_FST1L_HWL_345deg.zip", "draft_case.zip"]
    assert got == want
    assert got["FST2F_FST1F_LWL_000deg.zip"][0] == [
        "FST2F_FST1F_LWL_000deg_Jacket1.csv", "FST2F_FST1F_LWL_000deg_Strut1.csv",
        "FST2F_FST1F_LWL_000deg_Strut2.csv"]
    assert {r.stem for r in lib.ok} == {r.stem for r in report.ok}


def test_override_text_retargets_the_batch_line_and_matches_the_library(project, tmp_path):
    override = ("{'meta': {'label': '04c_maintenance'}, "
                "'analysis': {'input_directory': '../output/csv/04c_maintenance'}, "
                "'file_management': {'input_directory': '../04c_maintenance', "
                "'output_directory': '../output/zip/04c_maintenance'}}")
    report = run_config(project / "scripts" / "zip_config.yml", override)
    assert sorted(r.stem for r in report.ok) == ["M1_000deg", "M2_090deg"]
    zipkit.zip_by_extension(project / "output/csv/04c_maintenance", "csv", tmp_path / "lib",
                            stems_from=project / "04c_maintenance", stem_extensions="yml",
                            progress=False, workers=1)
    assert archives(project / "output/zip/04c_maintenance") == archives(tmp_path / "lib")
    assert not (project / "output/zip/03c_100yr").exists()  # the config's own scenario untouched


def test_override_as_dict_deep_merges_and_keeps_sibling_keys(project):
    cfg = load_config(project / "scripts" / "zip_config.yml",
                      {"file_management": {"filename": {"filters": {"not_contains": ["QA"]}}}})
    kw = cfg.plan_kwargs
    assert kw["not_contains"] == ["QA"]
    assert kw["stem_extensions"] == ["yml"]  # sibling of filters kept
    assert kw["stems_from"] == str(project / "03c_100yr")
    assert cfg.origins["file_management.filename.filters.not_contains"] == "override"
    assert cfg.origins["file_management.filename.extension"] == "config"
    assert cfg.origins["zipkit.compression"] == "default"


# --------------------------------------------------------------------------- marker filters
@pytest.mark.parametrize(("filters", "stems"), [
    ("{contains: [FST2F]}", ["FST2F_FST1F_LWL_000deg", "FST2F_FST1F_LWL_000deg_QA"]),
    ("{contains: [FST2F, QA]}", ["FST2F_FST1F_LWL_000deg_QA"]),
    ("{not_contains: [QA, draft]}", ["FST2F_FST1F_LWL_000deg", "FST2L_FST1L_HWL_345deg"]),
    ("{contains: FST, not_contains: QA}", ["FST2F_FST1F_LWL_000deg", "FST2L_FST1L_HWL_345deg"]),
    ("{regex: '^FST2L'}", ["FST2L_FST1L_HWL_345deg"]),
    ("{regex: ['^draft', '345deg$']}", ["FST2L_FST1L_HWL_345deg", "draft_case"]),
    ("{min_size_kb: 0.5}", ["FST2L_FST1L_HWL_345deg", "draft_case"]),
    ("{max_size_kb: 0.5}", ["FST2F_FST1F_LWL_000deg", "FST2F_FST1F_LWL_000deg_QA"]),
])
def test_marker_filters_select_the_right_stems(project, filters, stems):
    text = THREE_FOLDER.replace("filters: {contains: [], not_contains: []}", f"filters: {filters}")
    cfg = load_config(write_config(project / "scripts", text, "f.yml"))
    p = zipkit.plan(**cfg.plan_kwargs)
    assert [s.stem for s in p.stems] == stems


def test_contains_and_not_contains_filters_decide_which_archives_are_written(project):
    override = {"file_management": {"filename": {"filters": {"contains": ["FST"], "not_contains": ["QA"]}}}}
    report = run_config(project / "scripts" / "zip_config.yml", override)
    assert sorted(p.name for p in (project / "output/zip/03c_100yr").iterdir()) == [
        "FST2F_FST1F_LWL_000deg.zip", "FST2L_FST1L_HWL_345deg.zip"]
    assert len(report.results) == 2
    # the filters choose stems, not files: with the QA marker filtered out, its data file
    # starts with the shorter stem + "_" and so belongs to it (as under the old substring rule)
    with zipfile.ZipFile(project / "output/zip/03c_100yr/FST2F_FST1F_LWL_000deg.zip") as zf:
        assert "FST2F_FST1F_LWL_000deg_QA_Jacket1.csv" in zf.namelist()


def test_pattern_selects_markers_by_glob(project):
    text = THREE_FOLDER.replace("pattern: NULL", "pattern: HWL")
    p = zipkit.plan(**load_config(write_config(project / "scripts", text, "p.yml")).plan_kwargs)
    assert [s.stem for s in p.stems] == ["FST2L_FST1L_HWL_345deg"]


def test_match_contains_restores_the_old_substring_rule(tmp_path):
    make_scenario(tmp_path, "s", {"case1": ["a"], "case10": ["a"]})
    base = THREE_FOLDER.replace("03c_100yr", "s")
    prefix = zipkit.plan(**load_config(write_config(tmp_path / "scripts", base)).plan_kwargs)
    assert {s.stem: list(s.names) for s in prefix.stems} == {
        "case1": ["case1_a.csv"], "case10": ["case10_a.csv"]}
    old = load_config(tmp_path / "scripts" / "zip_config.yml", "{'zipkit': {'match': 'contains'}}")
    contains = zipkit.plan(**old.plan_kwargs)
    assert {s.stem: list(s.names) for s in contains.stems} == {
        "case1": ["case10_a.csv", "case1_a.csv"], "case10": ["case10_a.csv"]}


# --------------------------------------------------------------------------- the old example configs
def test_old_basic_config_example_loads_unchanged(tmp_path):
    """examples/configs/basic_config.yml is the old tool's documented example, byte for byte."""
    make_scenario(tmp_path, "example_scenario")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(EXAMPLES / "basic_config.yml", scripts)
    cfg = load_config(scripts / "basic_config.yml")
    assert cfg.run_kwargs == {"workers": 30, "progress": True, "save_error_reports": False, "executor": None}
    kw = cfg.plan_kwargs
    assert kw["timeout"] == 3600
    assert kw["source"] == str(tmp_path / "output/csv/example_scenario")
    assert kw["stems_from"] == str(tmp_path / "example_scenario")
    assert kw["output"] == str(tmp_path / "output/zip/example_scenario")
    assert kw["extensions"] == ["csv"] and kw["stem_extensions"] == ["yml"]
    assert kw["overwrite"] == "always" and kw["match"] == "prefix"
    assert kw["pattern"] is None and kw["contains"] is None and kw["not_contains"] is None
    assert cfg.settings["meta"]["label"] == "example_scenario"
    text = cfg.describe()
    for line in ("parallel_processing.max_workers", "30", "timeout=3600", "workers=30",
                 "accepted, not used by zipkit: default.log_level, meta"):
        assert line in text


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yml")))
def test_every_example_config_loads_in_its_layout(tmp_path, name):
    for scenario in ("example_scenario", "03c_100yr"):
        make_scenario(tmp_path, scenario)
    (tmp_path / "scripts").mkdir()
    shutil.copy(EXAMPLES / name, tmp_path / "scripts")
    cfg = load_config(tmp_path / "scripts" / name)
    assert zipkit.plan(**cfg.plan_kwargs).stems


def test_zipkit_options_example_maps_to_library_names(tmp_path):
    make_scenario(tmp_path, "03c_100yr")
    (tmp_path / "scripts").mkdir()
    shutil.copy(EXAMPLES / "zipkit_options.yml", tmp_path / "scripts")
    kw = load_config(tmp_path / "scripts" / "zipkit_options.yml").plan_kwargs
    assert (kw["overwrite"], kw["compression"], kw["level"], kw["verify"], kw["delete_sources"]) == (
        "update", "deflate", 6, True, False)
    assert kw["extensions"] == ["csv", "txt"] and kw["not_contains"] == ["_draft"]


# --------------------------------------------------------------------------- resolution rules
def test_paths_resolve_against_the_config_folder_not_the_cwd(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(os.path.relpath(project / "scripts" / "zip_config.yml"))
    assert cfg.path == project / "scripts" / "zip_config.yml"
    assert cfg.plan_kwargs["source"] == str(project / "output/csv/03c_100yr")


def test_null_output_directory_means_results_beside_the_config(project):
    text = THREE_FOLDER.replace("output_directory: ../output/zip/03c_100yr", "output_directory: null")
    cfg_path = write_config(project / "scripts", text, "null_out.yml")
    report = run_config(cfg_path)
    assert report.ok and all(r.archive.parent == project / "scripts" / "results" for r in report.results)
    assert "(null: results/ beside the config)" in load_config(cfg_path).describe()
    absent = THREE_FOLDER.replace("  output_directory: ../output/zip/03c_100yr\n", "")
    assert load_config(write_config(project / "scripts", absent, "absent.yml")).plan_kwargs["output"] == str(
        project / "scripts" / "results")


def test_without_marker_folder_the_data_files_own_stems_are_used(tmp_path):
    data = tmp_path / "runs"
    data.mkdir()
    for name in ("run1.dat", "run1.log", "run2.dat", "notes.txt"):
        (data / name).write_text(name)
    cfg = write_config(tmp_path, "analysis:\n  input_directory: runs\n"
                                 "  filename:\n    extension: [dat, log]\n"
                                 "file_management:\n  input_directory: null\n  output_directory: zips\n")
    report = run_config(cfg, progress=False)
    assert {r.stem: list(r.files) for r in report.results} == {
        "run1": ["run1.dat", "run1.log"], "run2": ["run2.dat"]}
    assert sorted(p.name for p in (tmp_path / "zips").iterdir()) == ["run1.zip", "run2.zip"]


def test_extension_accepts_a_string_or_a_list(project):
    text = THREE_FOLDER.replace("filename: {extension: [csv]}", "filename: {extension: .CSV}")
    text = text.replace("extension: [yml]", "extension: yml")
    kw = load_config(write_config(project / "scripts", text, "s.yml")).plan_kwargs
    assert kw["extensions"] == [".CSV"] and kw["stem_extensions"] == ["yml"]
    assert [s.stem for s in zipkit.plan(**kw).stems][:1] == ["FST2F_FST1F_LWL_000deg"]


@pytest.mark.parametrize(("pp", "zk", "workers"), [
    ("{enabled: false, max_workers: 30}", "", 1),
    ("{enabled: true, max_workers: auto}", "", "auto"),
    ("{enabled: true, max_workers: 7}", "", 7),
    ("{}", "", "auto"),
    ("{enabled: false}", "zipkit: {workers: 3}\n", 3),
])
def test_workers_from_parallel_processing_and_zipkit_section(tmp_path, pp, zk, workers):
    make_scenario(tmp_path, "03c_100yr")
    text = THREE_FOLDER.replace(
        "parallel_processing: {enabled: true, max_workers: 2, save_error_reports: false, "
        "progress_reporting: false}", f"parallel_processing: {pp}") + zk
    assert load_config(write_config(tmp_path / "scripts", text)).run_kwargs["workers"] == workers


def test_enabled_false_runs_in_process(project):
    report = run_config(project / "scripts" / "zip_config.yml",
                        "{'parallel_processing': {'enabled': False}}")
    assert report.executor == "in-process" and len(report.ok) == 4


def test_overwrite_false_keeps_existing_archives(project):
    out = project / "output/zip/03c_100yr"
    out.mkdir(parents=True)
    with zipfile.ZipFile(out / "draft_case.zip", "w") as zf:
        zf.writestr("kept.txt", "kept")
    kept = (out / "draft_case.zip").read_bytes()
    report = run_config(project / "scripts" / "zip_config.yml",
                        {"default": {"config": {"overwrite": {"output": False}}}})
    assert (out / "draft_case.zip").read_bytes() == kept
    assert [r.stem for r in report.results if r.status == "skipped"] == ["draft_case"]
    assert load_config(project / "scripts" / "zip_config.yml",
                       {"default": {"config": {"overwrite": {"output": False}}},
                        "zipkit": {"overwrite": "update"}}).plan_kwargs["overwrite"] == "update"


def test_zipkit_section_sets_library_options(project):
    cfg = load_config(project / "scripts" / "zip_config.yml", {"zipkit": {
        "compression": "stored", "reproducible": True, "verify": True, "durable": True,
        "timeout": 60, "progress": True, "save_error_reports": "errors.json", "deflate_backend": "zlib"}})
    kw, run = cfg.plan_kwargs, cfg.run_kwargs
    assert (kw["compression"], kw["reproducible"], kw["verify"], kw["durable"], kw["timeout"],
            kw["deflate_backend"]) == ("stored", True, True, True, 60, "zlib")
    assert run["progress"] is True
    assert run["save_error_reports"] == str(project / "scripts" / "errors.json")
    report = run_config(project / "scripts" / "zip_config.yml", {"zipkit": {"compression": "stored"}})
    with zipfile.ZipFile(report.ok[0].archive) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize(("zk", "executor"), [
    ({"executor": "dask"}, "dask"),
    ({"scheduler_address": "tcp://10.0.0.1:8786"}, "tcp://10.0.0.1:8786"),
    ({"executor": "dask", "scheduler_address": "tcp://h:8786"}, "tcp://h:8786"),
    ({"executor": "process"}, None),
])
def test_executor_and_scheduler_address(project, zk, executor):
    cfg = load_config(project / "scripts" / "zip_config.yml", {"zipkit": zk})
    assert cfg.run_kwargs["executor"] == executor


def test_kwargs_are_fresh_copies(project):
    cfg = load_config(project / "scripts" / "zip_config.yml")
    kw = cfg.plan_kwargs
    kw["extensions"].append("txt")
    cfg.run_kwargs["workers"] = 99
    assert cfg.plan_kwargs["extensions"] == ["csv"] and cfg.run_kwargs["workers"] == 2


# --------------------------------------------------------------------------- validation
def bad(project: Path, text: str, override=None) -> ConfigError:
    path = write_config(project / "scripts", text, "bad.yml")
    with pytest.raises(ConfigError) as info:
        load_config(path, override)
    assert info.value.path == path
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))
    return info.value


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ("max_workers: 2", "max_worker: 2", "parallel_processing.max_worker",
     "did you mean 'parallel_processing.max_workers'"),
    ("max_workers: 2", "max_workers: many", "parallel_processing.max_workers",
     "must be 'auto' or an integer from 1 to 4096, not 'many'"),
    ("max_workers: 2", "max_workers: 0", "parallel_processing.max_workers", "'auto' or an integer from 1"),
    ("max_workers: 2", "max_workers: true", "parallel_processing.max_workers", "a boolean"),
    ("enabled: true", "enabled: maybe", "parallel_processing.enabled", "expected true or false"),
    ("extension: [csv]", "extension: [csv, 3]", "analysis.filename.extension", "list of strings"),
    ("extension: [csv]", "extension: []", "analysis.filename.extension", "at least one"),
    ("filters: {contains: [], not_contains: []}", "filters: {contain: [x]}",
     "file_management.filename.filters.contain", "did you mean 'file_management.filename.filters.contains'"),
    ("filters: {contains: [], not_contains: []}", "filters: {regex: '(['}",
     "file_management.filename.filters.regex", "not a valid regular expression"),
    ("filters: {contains: [], not_contains: []}", "filters: {min_size_kb: 9, max_size_kb: 1}",
     "file_management.filename.filters.min_size_kb", "must be at most max_size_kb (1 KiB), not 9 KiB"),
    ("filters: {contains: [], not_contains: []}", "filters: {min_size_kb: -1}",
     "file_management.filename.filters.min_size_kb", ">= 0"),
    ("input_directory: ../03c_100yr", "input_directory: ../nowhere",
     "file_management.input_directory", "folder does not exist"),
    ("input_directory: ../output/csv/03c_100yr", "input_directory: ../output/csv/missing",
     "analysis.input_directory", "folder does not exist"),
    ("input_directory: ../output/csv/03c_100yr", "output_directory: x",
     "analysis.output_directory", "did you mean 'file_management.output_directory'"),
    ("input_directory: ../output/csv/03c_100yr", "input_directory: null",
     "analysis.input_directory", "missing"),
    ("extension: [yml]", "pattern_x: 1", "file_management.filename.pattern_x",
     "did you mean 'file_management.filename.pattern'"),
    ("parallel_processing: {", "parallel_processing: 5\nx: {", "parallel_processing", "expected a section"),
])
def test_invalid_configs_name_the_key_and_the_problem(project, old, new, key, words):
    assert old in THREE_FOLDER
    err = bad(project, THREE_FOLDER.replace(old, new, 1))
    assert err.key == key
    assert words in str(err)
    assert not (project / "output" / "zip").exists()


def test_unknown_top_level_key_lists_the_sections(project):
    err = bad(project, THREE_FOLDER + "totally_new: 1\n")
    assert err.key == "totally_new" and "expected at the top one of:" in str(err) and "zipkit" in str(err)


@pytest.mark.parametrize(("zk", "key", "words"), [
    ("{compresion: lzma}", "zipkit.compresion", "did you mean 'zipkit.compression'"),
    ("{compression: lzm}", "zipkit.compression", "did you mean 'lzma'"),
    ("{level: 12}", "zipkit.level", "an integer from 0 to 9, not 12"),
    ("{compression: stored, level: 5}", "zipkit.level", "level for stored must be only 0, not 5"),
    ("{compression: bzip2, level: 0}", "zipkit.level", "level for bzip2 must be an integer from 1 to 9"),
    ("{overwrite: sometimes}", "zipkit.overwrite", "always, update, never, replace"),
    ("{match: substring}", "zipkit.match", "prefix, contains"),
    ("{timeout: 0}", "zipkit.timeout", ">= 0.001"),
    ("{executor: process, scheduler_address: 'tcp://h:1'}", "zipkit.scheduler_address", "executor: dask"),
    ("{stems: [a]}", "zipkit.stems", "not both"),
])
def test_invalid_zipkit_section(project, zk, key, words):
    err = bad(project, THREE_FOLDER + f"zipkit: {zk}\n")
    assert err.key == key and words in str(err)


@pytest.mark.parametrize(("text", "words"), [
    ("analysis: [unclosed\n", "not valid YAML"),
    ("analysis:\n\tinput_directory: x\n", "not valid YAML"),
    ("", "the config is empty"),
    ("- a\n- b\n", "expected a mapping of keys at the top"),
    ("analysis: !!python/object/apply:os.system ['true']\n", "YAML tag '!!python/object/apply:os.system'"),
    ("analysis: !!python/name:os.system\n", "YAML tag '!!python/name:os.system'"),
])
def test_unusable_yaml_is_one_line_error(project, text, words):
    err = bad(project, text)
    assert words in str(err)


def test_unsafe_tag_never_runs_its_payload(project, tmp_path):
    marker = tmp_path / "PWNED"
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    text = THREE_FOLDER.replace("max_workers: 2", f"max_workers: {payload}")
    err = bad(project, text)
    assert "refused" in str(err) and "line 5" in str(err)
    assert not marker.exists()


@pytest.mark.parametrize(("override", "words"), [
    ("__import__('os').system('touch {marker}')", "not a Python literal dict"),
    ("{'analysis': {'input_directory': open('{marker}', 'w').name}}", "not a Python literal dict"),
    ("{'analysis': {'input_directory': '../output/csv/03c_100yr'}", "not a Python literal dict"),
    ("['a', 'b']", "must be a dict"),
    ("{'analysis': {'input_dir': 'x'}}", "did you mean 'analysis.input_directory'? (set by the override)"),
    ("{'parallel_processing': {'max_workers': 'many'}}", "(set by the override)"),
    ("{'file_management': 'x'}", "expected a section"),
])
def test_malformed_override_is_refused_and_never_evaluated(project, tmp_path, override, words):
    marker = tmp_path / "PWNED"
    err = bad(project, THREE_FOLDER, override.replace("{marker}", str(marker)))
    assert words in str(err)
    assert not marker.exists()


def test_missing_or_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    (tmp_path / "latin1.yml").write_bytes(b"analysis: {input_directory: caf\xe9}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "latin1.yml")


def test_empty_override_text_is_no_override(project):
    assert load_config(project / "scripts" / "zip_config.yml", "  ").override is None


def test_yaml_null_sections_and_blank_lists_are_accepted(project):
    text = THREE_FOLDER.replace("filters: {contains: [], not_contains: []}", "filters:") + "zipkit:\n"
    cfg = load_config(write_config(project / "scripts", text, "n.yml"))
    assert cfg.plan_kwargs["contains"] is None


# --------------------------------------------------------------------------- run_config
def test_run_config_is_exported_lazily_and_takes_run_overrides(project, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert zipkit.run_config is run_config
    report = zipkit.run_config(project / "scripts" / "zip_config.yml", workers=1, reproducible=True)
    assert report.executor == "in-process" and len(report.ok) == 4
    with zipfile.ZipFile(report.ok[0].archive) as zf:
        assert zf.infolist()[0].date_time == (1980, 1, 1, 0, 0, 0)
    with pytest.raises(UsageError, match="unexpected argument 'wrokers'"):
        zipkit.run_config(project / "scripts" / "zip_config.yml", wrokers=1)


def test_run_config_writes_nothing_when_the_config_is_invalid(project):
    text = THREE_FOLDER.replace("max_workers: 2", "max_workers: many")
    path = write_config(project / "scripts", text, "b.yml")
    with pytest.raises(ConfigError):
        zipkit.run_config(path)
    assert not (project / "output" / "zip").exists()


def test_import_zipkit_does_not_load_the_config_module():
    code = "import sys, zipkit; assert 'zipkit._config' not in sys.modules and 'yaml' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- settings_to_yaml
def test_settings_to_yaml_round_trips_through_load_config(project):
    plan_kw = dict(
        source=str(project / "output/csv/03c_100yr"), extensions=["csv", "txt"],
        output=str(project / "output/zip/x"), stems_from=str(project / "03c_100yr"),
        stem_extensions=["yml"], stems=None, match="contains", pattern="FST", contains=["F"],
        not_contains=["QA"], regex="deg$", min_size_kb=0.0, max_size_kb=100.0, overwrite="update",
        compression="bzip2", level=9, deflate_backend="zlib", verify=True, delete_sources=True,
        reproducible=True, durable=True, timeout=120,
    )
    run_kw = dict(workers=3, progress=False, save_error_reports=True, executor="tcp://sched:8786")
    folder = project / "saved"
    folder.mkdir()
    text = settings_to_yaml(plan_kw, run_kw, relative_to=folder)
    assert "!!" not in text and str(project) not in text  # plain YAML, relative paths
    (folder / "form.yml").write_text(text)
    cfg = load_config(folder / "form.yml")
    assert cfg.plan_kwargs == plan_kw
    assert cfg.run_kwargs == run_kw
    again = settings_to_yaml(cfg.plan_kwargs, cfg.run_kwargs, relative_to=folder)
    assert again == text


def test_settings_to_yaml_defaults_and_own_stems(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.dat").write_text("a")
    text = settings_to_yaml({"source": tmp_path / "runs", "extensions": "dat"}, {"workers": 1})
    data = yaml.safe_load(text)
    assert data["file_management"] == {"output_directory": (tmp_path / "runs").as_posix()}
    assert "zipkit" not in data  # nothing but defaults
    assert data["parallel_processing"]["enabled"] is False
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.yml").write_text(text)
    cfg = load_config(tmp_path / "elsewhere" / "c.yml")
    assert cfg.plan_kwargs["output"] == str(tmp_path / "runs")  # library default: the source folder
    assert cfg.plan_kwargs["stems_from"] is None and cfg.run_kwargs["workers"] == 1
    assert cfg.plan_kwargs["overwrite"] == "always"


def test_settings_to_yaml_written_config_runs_via_the_cli(project):
    plan_kw = {"source": project / "output/csv/04c_maintenance", "extensions": ["csv"],
               "output": project / "zips", "stems_from": project / "04c_maintenance",
               "stem_extensions": ["yml"]}
    path = project / "scripts" / "saved.yml"
    run_kw = {"workers": 1, "progress": lambda e: None}  # a callable progress is not saved
    path.write_text(settings_to_yaml(plan_kw, run_kw, relative_to=path.parent))
    proc = subprocess.run([sys.executable, "-m", "zipkit", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (project / "zips").iterdir()) == ["M1_000deg.zip", "M2_090deg.zip"]


def test_settings_to_yaml_refuses_what_cannot_be_saved(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(UsageError, match="executor object"):
        settings_to_yaml({"source": tmp_path, "extensions": ["csv"]}, {"executor": pool})
    with pytest.raises(UsageError, match="'colour'"):
        settings_to_yaml({"source": tmp_path, "extensions": ["csv"], "colour": "red"}, {})
    with pytest.raises(UsageError, match="'extensions' is needed"):
        settings_to_yaml({"source": tmp_path}, {})


# --------------------------------------------------------------------------- the one schema
def test_schema_reference_lists_every_key():
    md = schema_reference_markdown()
    for s in SCHEMA:
        assert f"`{s.key}`" in md
    assert md.count("\n| `") == len(SCHEMA)
    assert "`results/` beside the config" in md and "**(required)**" in md


def test_describe_lists_every_used_key_and_the_accepted_ones_present(project):
    cfg = load_config(project / "scripts" / "zip_config.yml")
    lines = cfg.describe().splitlines()
    shown = {line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("    ")}
    assert shown == {s.key for s in SCHEMA if s.used} | {"zipkit.plan(", "zipkit.run_plan(plan,", ")"}
    accepted = next(line for line in lines if line.startswith("accepted, not used by zipkit: "))
    assert set(accepted.split(": ", 1)[1].split(", ")) == {
        "default.log_level", "meta", "analysis.flag", "analysis.type", "analysis.by", "analysis_settings",
        "file_management.flag"}


def test_override_dict_may_hold_paths_and_numbers_as_folder_names_need_quotes(project):
    cfg = load_config(project / "scripts" / "zip_config.yml",
                      {"analysis": {"input_directory": project / "output/csv/04c_maintenance"}})
    assert cfg.plan_kwargs["source"] == str(project / "output/csv/04c_maintenance")
    err = bad(project, THREE_FOLDER.replace("input_directory: ../03c_100yr", "input_directory: 2024"))
    assert err.key == "file_management.input_directory" and "quote a folder named like a number" in str(err)
