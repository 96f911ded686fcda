"""Grouping rules: which file goes into which stem's archive (DESIGN.md "Grouping")."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zipkit
from zipkit import NothingToDo, SourceError, UnsafeStemError, UsageError, plan
from zipkit._plan import match_stem


def touch(folder: Path, *names: str, data: bytes = b"x") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(data)


def groups(p: zipkit.Plan) -> dict[str, list[str]]:
    return {s.stem: list(s.names) for s in p.stems}


def test_own_stems_group_by_name_minus_extension(tmp_path):
    touch(tmp_path, "run1.dat", "run1.sim", "run1.log", "run2.dat", "notes.txt")
    p = plan(tmp_path, ["dat", "sim"], tmp_path / "out")
    assert groups(p) == {"run1": ["run1.dat", "run1.sim"], "run2": ["run2.dat"]}
    assert p.stems[0].archive == tmp_path / "out" / "run1.zip"


def test_extension_is_case_insensitive_with_or_without_dot(tmp_path):
    touch(tmp_path, "Case1.CSV", "case2.csv", "case3.Csv", "case4.csvx")
    for exts in (["csv"], [".CSV"], "csv", [".csv", "CSV"]):
        assert sorted(groups(plan(tmp_path, exts))) == ["Case1", "case2", "case3"]


def test_longest_extension_wins(tmp_path):
    touch(tmp_path, "a.tar.gz", "b.gz")
    assert groups(plan(tmp_path, ["gz", "tar.gz"])) == {"a": ["a.tar.gz"], "b": ["b.gz"]}


def test_only_regular_files_count(tmp_path):
    touch(tmp_path, "a.csv")
    (tmp_path / "dir.csv").mkdir()
    os.mkfifo(tmp_path / "fifo.csv")
    p = plan(tmp_path, "csv")
    assert groups(p) == {"a": ["a.csv"]}
    ignored = {path.name: why for path, why in p.ignored}
    assert ignored == {"dir.csv": "folder", "fifo.csv": "not a regular file"}


def test_marker_stems_take_prefix_boundary_and_longest_wins(tmp_path):
    models, data = tmp_path / "models", tmp_path / "csv"
    touch(models, "case1.yml", "case10.yml", "case1_a.yml", "lonely.yml")
    touch(data, "case1.csv", "case1_x.csv", "case1-y.csv", "case1 z.csv", "case1.extra.csv",
          "case10_x.csv", "case1_a_x.csv", "case1x.csv", "other.csv", "xcase1_b.csv")
    p = plan(data, "csv", tmp_path / "zip", stems_from=models, stem_extensions="yml")
    assert groups(p) == {
        "case1": ["case1 z.csv", "case1-y.csv", "case1.csv", "case1.extra.csv", "case1_x.csv"],
        "case10": ["case10_x.csv"],
        "case1_a": ["case1_a_x.csv"],
    }
    assert sorted(x.name for x in p.unmatched) == ["case1x.csv", "other.csv", "xcase1_b.csv"]
    assert p.empty_stems == ("lonely",)
    assert dict((x.name, s) for x, s in p.contested) == {"case1_a_x.csv": ("case1_a", "case1")}
    assert "lonely" in str(p) and "other.csv" in str(p)


def test_contains_mode_reproduces_old_substring_rule(tmp_path):
    touch(tmp_path / "m", "case1.yml", "case10.yml")
    touch(tmp_path / "d", "case10_x.csv", "xcase1_b.csv", "case1.csv")
    p = plan(tmp_path / "d", "csv", tmp_path / "z", stems_from=tmp_path / "m", stem_extensions="yml",
             match="contains")
    assert groups(p) == {"case1": ["case1.csv", "case10_x.csv", "xcase1_b.csv"], "case10": ["case10_x.csv"]}
    assert [(x.name, s) for x, s in p.contested] == [("case10_x.csv", ("case10", "case1"))]
    # a file in several archives is never deleted by delete_sources
    assert p.stems[0].keep == frozenset({"case10_x.csv"})


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, ["a_LWL_000", "a_LWL_090", "b_HWL_000", "big_HWL"]),
    ({"pattern": "LWL"}, ["a_LWL_000", "a_LWL_090"]),
    ({"contains": ["HWL", "000"]}, ["b_HWL_000"]),
    ({"not_contains": "000"}, ["a_LWL_090", "big_HWL"]),
    ({"regex": r"_0{3}$"}, ["a_LWL_000", "b_HWL_000"]),
    ({"min_size_kb": 2}, ["big_HWL"]),
    ({"max_size_kb": 1}, ["a_LWL_000", "a_LWL_090", "b_HWL_000"]),
])
def test_marker_filters(tmp_path, kw, expected):
    touch(tmp_path / "m", "a_LWL_000.yml", "a_LWL_090.yml", "b_HWL_000.yml", "readme.txt")
    (tmp_path / "m" / "big_HWL.yml").write_bytes(b"y" * 4096)
    touch(tmp_path / "d", *(f"{s}_r.csv" for s in ["a_LWL_000", "a_LWL_090", "b_HWL_000", "big_HWL"]))
    p = plan(tmp_path / "d", "csv", tmp_path / "z", stems_from=tmp_path / "m", stem_extensions="yml", **kw)
    assert sorted(groups(p)) == expected


@pytest.mark.parametrize("sized", [False, True])
def test_only_regular_marker_files_name_stems(tmp_path, sized):
    """With or without a size filter (which makes zipkit stat the markers): a folder named like
    a marker is no marker; a link to a marker inside the marker folder is one, a link leading
    outside is not."""
    m, d = tmp_path / "m", tmp_path / "d"
    touch(m, "a.yml", "b.yml")
    (m / "dir.yml").mkdir()
    touch(tmp_path / "elsewhere", "out.yml")
    (m / "inlink.yml").symlink_to(m / "b.yml")
    (m / "outlink.yml").symlink_to(tmp_path / "elsewhere" / "out.yml")
    touch(d, *(f"{s}_r.csv" for s in ["a", "b", "dir", "inlink", "outlink"]))
    kw = {"min_size_kb": 0} if sized else {}
    p = plan(d, "csv", tmp_path / "z", stems_from=m, stem_extensions="yml", **kw)
    assert sorted(groups(p)) == ["a", "b", "inlink"]
    (m / "inlink.yml").unlink()
    (m / "outlink.yml").unlink()  # no links left: the listing alone names the stems
    p = plan(d, "csv", tmp_path / "z", stems_from=m, stem_extensions="yml", **kw)
    assert sorted(groups(p)) == ["a", "b"]


def test_stems_given_directly(tmp_path):
    touch(tmp_path, "s1_a.csv", "s2_a.csv", "s3_a.csv")
    p = plan(tmp_path, "csv", tmp_path / "z", stems=["s1", "s2", "nope"])
    assert sorted(groups(p)) == ["s1", "s2"]
    assert p.empty_stems == ("nope",)
    assert [x.name for x in p.unmatched] == ["s3_a.csv"]


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "a\\b", "nul\0", "..", "."])
def test_unsafe_stems_refused(tmp_path, bad):
    touch(tmp_path, "a.csv")
    with pytest.raises(UnsafeStemError) as e:
        plan(tmp_path, "csv", stems=[bad])
    assert repr(bad) in str(e.value)


def test_names_with_spaces_and_non_ascii(tmp_path):
    touch(tmp_path, "Ölplattform Fall 1.csv", "Ölplattform Fall 1_b.csv", "測試.csv")
    assert groups(plan(tmp_path, "csv")) == {"Ölplattform Fall 1": ["Ölplattform Fall 1.csv"],
                                              "Ölplattform Fall 1_b": ["Ölplattform Fall 1_b.csv"],
                                              "測試": ["測試.csv"]}


def test_an_archive_that_is_a_source_of_the_run_is_refused_naming_both(tmp_path):
    """output == source with ``zip`` among the extensions: the user's own a.zip is an input of
    stem a and would be its archive: refused before any work, never written over."""
    touch(tmp_path, "a.dat", "a.zip", "c.dat")
    before = (tmp_path / "a.zip").read_bytes()
    with pytest.raises(UsageError) as e:
        plan(tmp_path, ["dat", "zip"])  # output == source
    assert str(tmp_path / "a.zip") in str(e.value) and "source of stem 'a'" in str(e.value)
    assert (tmp_path / "a.zip").read_bytes() == before
    assert groups(plan(tmp_path, ["dat"])) == {"a": ["a.dat"], "c": ["c.dat"]}


def test_zipkit_temp_files_are_never_inputs(tmp_path):
    touch(tmp_path, "a.dat", ".zipkit-abc-1.tmp")
    p = plan(tmp_path, ["dat", "tmp"])
    assert groups(p) == {"a": ["a.dat"]}
    assert [(x.name, why) for x, why in p.ignored] == [(".zipkit-abc-1.tmp", "zipkit temp file")]


def test_symlinks_inside_followed_outside_ignored(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    touch(src, "real.dat")
    touch(elsewhere, "secret.dat")
    (src / "inside.dat").symlink_to(src / "real.dat")
    (src / "outside.dat").symlink_to(elsewhere / "secret.dat")
    (src / "broken.dat").symlink_to(src / "missing.dat")
    p = plan(src, "dat", tmp_path / "out")
    assert sorted(groups(p)) == ["inside", "real"]
    assert {x.name for x, _ in p.ignored} == {"outside.dat", "broken.dat"}


def test_bad_input_errors_name_the_culprit(tmp_path):
    with pytest.raises(SourceError, match="missing"):
        plan(tmp_path / "missing", "csv")
    touch(tmp_path, "a.csv")
    with pytest.raises(NothingToDo, match="xyz"):
        plan(tmp_path, "xyz")
    with pytest.raises(UsageError, match="overwrite"):
        plan(tmp_path, "csv", overwrite="sometimes")
    with pytest.raises(UsageError, match="extension"):
        plan(tmp_path, [""])
    with pytest.raises(UsageError, match="stem_extensions"):
        plan(tmp_path, "csv", stems_from=tmp_path)
    with pytest.raises(UsageError, match="regex"):
        plan(tmp_path, "csv", stems_from=tmp_path, stem_extensions="csv", regex="(")
    with pytest.raises(UsageError, match="level"):
        plan(tmp_path, "csv", level=12)
    assert plan(tmp_path, "xyz", allow_empty=True).stems == ()


def test_plan_writes_nothing(tmp_path):
    touch(tmp_path / "d", "a.csv")
    p = plan(tmp_path / "d", "csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert p.to_records() == [{"stem": "a", "archive": str(tmp_path / "out" / "a.zip"), "action": "create",
                               "reason": "", "files": ["a.csv"], "bytes": 1, "kept": [], "dropped": []}]


@pytest.mark.parametrize("policy", ["always", "update", "never", "replace"])
def test_a_file_at_the_archive_path_that_is_not_a_zip_fails_its_stem_in_the_plan(tmp_path, policy):
    touch(tmp_path / "d", "a.csv", "b.csv")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "a.zip").write_bytes(b"not a zip")
    a, b = plan(tmp_path / "d", "csv", tmp_path / "o", overwrite=policy).stems
    assert (a.action, b.action) == ("fail", "create")
    assert str(tmp_path / "o" / "a.zip") in a.reason and "not a readable zip" in a.reason


def test_overwrite_policies_in_plan(tmp_path):
    import zipfile

    touch(tmp_path / "d", "a.csv", "b.csv")
    (tmp_path / "o").mkdir()
    with zipfile.ZipFile(tmp_path / "o" / "a.zip", "w") as zf:
        zf.writestr("a.csv", "x")
        zf.writestr("a.log", "old log")
    os.utime(tmp_path / "o" / "a.zip", (1e9, 1e9))  # older than the files

    def actions(policy):
        return [(s.action, s.reason, s.kept, s.dropped)
                for s in plan(tmp_path / "d", "csv", tmp_path / "o", overwrite=policy).stems]
    create = ("create", "", (), ())
    assert actions("always") == [("merge", "merge: 1 member kept", ("a.log",), ()), create]
    assert actions("never") == [("skip", "archive exists", (), ()), create]
    assert actions("replace") == [("replace", "replace: 1 member dropped", (), ("a.log",)), create]
    assert actions("update")[0][:3] == ("merge", "merge: 1 member kept (a member is newer)", ("a.log",))
    os.utime(tmp_path / "o" / "a.zip", (2**32, 2**32))  # newer than every file, holds a.csv, 1 byte
    assert actions("update") == [("skip", "up to date", (), ()), create]


# --- property-based: the prefix rule --------------------------------------------------------

alnum = st.text(string.ascii_letters + string.digits + "äß", min_size=1, max_size=6)
sep = st.sampled_from(["_", "-", ".", " "])


@settings(max_examples=300, deadline=None)
@given(stems=st.lists(alnum, min_size=1, max_size=6, unique=True),
       parts=st.lists(st.tuples(sep, alnum), max_size=3), pick=st.integers(0, 5))
def test_prefix_rule_properties(stems, parts, pick):
    stem = stems[pick % len(stems)]
    name = stem + "".join(s + a for s, a in parts) + ".csv"
    fits = match_stem(name, frozenset(stems))
    # the stem the name was built from always fits, and nothing fits that is not a boundary prefix
    assert stem in fits
    for f in fits:
        assert name.startswith(f) and not name[len(f)].isalnum()
    assert fits == sorted(fits, key=len, reverse=True)
    # a stem followed by a letter or digit never fits (case1 never takes case10_x)
    for s in stems:
        if name.startswith(s) and name[len(s)].isalnum():
            assert s not in fits


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.tuples(alnum, st.sampled_from(["dat", "DAT", "Sim", "log"])), min_size=1,
                      max_size=12, unique_by=lambda t: (t[0] + "." + t[1]).lower()))
def test_own_stems_partition_the_files(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("own")
    files = {f"{a}.{b}" for a, b in names}
    touch(folder, *files)
    if len({f.lower() for f in files}) != len(os.listdir(folder)):
        return  # case-insensitive filesystem collapsed names
    p = plan(folder, ["dat", "sim"], allow_empty=True)
    placed = [n for s in p.stems for n in s.names]
    assert sorted(placed) == sorted(f for f in files if not f.lower().endswith(".log"))
    assert len(placed) == len(set(placed))  # each file in exactly one stem
    for s in p.stems:
        assert all(n.rsplit(".", 1)[0] == s.stem for n in s.names)
        assert list(s.names) == sorted(s.names)


# --- property-based: the linear matchers against the rules as first written ----------------

def reference_prefix(name: str, stems: set[str]) -> list[str]:
    """The prefix rule, one position at a time (zipkit's first matcher)."""
    return [name[:i] for i in range(len(name) - 1, 0, -1) if not name[i].isalnum() and name[:i] in stems]


def reference_contains(name: str, stems: list[str]) -> list[str]:
    """The old tool's substring rule: every stem in the name, longest first, ties by name."""
    return sorted((s for s in sorted(set(stems)) if s in name), key=len, reverse=True)


short = st.text("ab1_.-ä ", min_size=1, max_size=4)


@settings(max_examples=500, deadline=None)
@given(stems=st.lists(short, min_size=1, max_size=40, unique=True), names=st.lists(
    st.text("ab1_.-ä ", min_size=1, max_size=12), min_size=1, max_size=10))
def test_linear_matchers_agree_with_the_reference_rules(stems, names):
    """Many short stems over a small alphabet: prefixes of each other, substrings of each other,
    enough of them that the contains matcher looks names' substrings up instead of trying each."""
    from zipkit._match import contains_matcher, prefix_matcher

    prefix, contains = prefix_matcher(stems), contains_matcher(stems)
    for name in names + [s + sep for s in stems for sep in ("", "_", "1")]:
        assert prefix(name) == reference_prefix(name, set(stems)) == match_stem(name, frozenset(stems))
        assert contains(name) == reference_contains(name, stems)


@settings(max_examples=40, deadline=None)
@given(stems=st.lists(short.filter(lambda s: s.strip(". ") == s and s not in (".", "..")), min_size=1,
                      max_size=8, unique=True),
       names=st.lists(st.text("ab1_-ä", min_size=1, max_size=8), min_size=1, max_size=12, unique=True),
       mode=st.sampled_from(["prefix", "contains"]))
def test_plan_groups_as_the_reference_rules_do(tmp_path_factory, stems, names, mode):
    """The whole plan (scan, match, group) against a grouping written from the rules."""
    folder = tmp_path_factory.mktemp("match")
    files = sorted({n + ".csv" for n in names})
    touch(folder, *files)
    if len(os.listdir(folder)) != len(files):
        return  # a file system that folds names
    p = plan(folder, ["csv"], folder / "out", stems=stems, match=mode, allow_empty=True)
    want: dict[str, list[str]] = {}
    unmatched, contested = [], []
    for f in files:
        fits = reference_prefix(f, set(stems)) if mode == "prefix" else reference_contains(f, stems)
        if not fits:
            unmatched.append(f)
            continue
        if len(fits) > 1:
            contested.append((f, tuple(fits)))
        for s in fits[:1] if mode == "prefix" else fits:
            want.setdefault(s, []).append(f)
    assert groups(p) == {s: sorted(v) for s, v in sorted(want.items())}
    assert [u.name for u in p.unmatched] == unmatched
    assert [(c.name, fits) for c, fits in p.contested] == contested
    assert set(p.empty_stems) == set(stems) - set(want)
    if mode == "contains":
        for s in p.stems:
            assert s.keep == {n for n in s.names if any(n == c for c, _ in contested)}
