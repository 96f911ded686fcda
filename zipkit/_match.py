"""Match files to stems, linear in files whatever the number of stems.

``prefix`` (default): a name belongs to stem ``S`` when it starts with ``S`` followed by a
character that is not a letter or digit; the longest such stem wins. The stems are a set
looked up by the name's prefixes of the lengths that stems have: a handful of lookups per name.
``contains`` (the old tool's rule): every stem that occurs anywhere in the name, longest first;
looked up by the name's substrings of the stems' lengths when that is fewer steps than trying
each stem.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._scan import SourceFile

__all__ = ["Grouping", "contains_matcher", "group", "match_stem", "prefix_matcher"]

Matcher = Callable[[str], list[str]]


def prefix_matcher(stems: Iterable[str]) -> Matcher:
    """A function: name → every stem the name belongs to under the prefix rule, longest first."""
    stem_set = frozenset(stems)
    lengths = sorted({len(s) for s in stem_set if s}, reverse=True)

    def fits(name: str) -> list[str]:
        n = len(name)
        return [name[:i] for i in lengths
                if i < n and not name[i].isalnum() and name[:i] in stem_set]

    return fits


def match_stem(name: str, stems: frozenset[str] | set[str]) -> list[str]:
    """Every stem that ``name`` belongs to under the prefix rule, longest first.

    ``name`` belongs to ``S`` when it starts with ``S`` followed by a character that is not a
    letter or digit (``S.csv``, ``S_x.csv``, ``S-x``, ``S x``).
    """
    return prefix_matcher(stems)(name)


def contains_matcher(stems: Iterable[str]) -> Matcher:
    """A function: name → every stem that occurs anywhere in the name, longest first (ties by name)."""
    ordered = sorted(set(stems), key=lambda s: (-len(s), s))
    stem_set = frozenset(ordered)
    lengths = sorted({len(s) for s in stem_set}, reverse=True)

    def fits(name: str) -> list[str]:
        n = len(name)
        if len(ordered) <= n * len(lengths):  # few stems: try each
            return [s for s in ordered if s in name]
        found = {name[j:j + k] for k in lengths if k <= n for j in range(n - k + 1)}
        return sorted(found & stem_set, key=lambda s: (-len(s), s))

    return fits


@dataclass
class Grouping:
    """Files by stem (in scan order), files of no stem, files several stems fit (with those
    stems, longest first), and per stem the files it shares with others (never deleted).
    ``groups`` is a list per stem (scan order), or for own stems a tuple sorted by name."""

    groups: dict[str, Sequence[SourceFile]] = field(default_factory=dict)
    unmatched: list[Path] = field(default_factory=list)
    contested: list[tuple[Path, tuple[str, ...]]] = field(default_factory=list)
    keep: dict[str, set[str]] = field(default_factory=dict)


def group_own(files: Sequence[SourceFile], stems: Sequence[str]) -> Grouping:
    """Own stems: each file under its stem (``stems[i]`` is the stem of ``files[i]``); the
    groups made by sorting (by stem, then name), not by a list per stem."""
    out = Grouping()
    names = list(map(_NAME, files))
    order = sorted(range(len(files)), key=names.__getitem__)
    order.sort(key=stems.__getitem__)  # stable: by stem, then by name
    groups = out.groups
    i, n = 0, len(order)
    while i < n:
        stem = stems[order[i]]
        j = i + 1
        while j < n and stems[order[j]] == stem:
            j += 1
        groups[stem] = (files[order[i]],) if j == i + 1 else tuple(files[k] for k in order[i:j])
        i = j
    return out


_NAME = operator.itemgetter(1)  # SourceFile.name, at C speed


def group(files: Sequence[SourceFile], wanted: Sequence[str],
          match: Literal["prefix", "contains"]) -> Grouping:
    """Given stems: each file under the longest stem it fits (``prefix``) or every one (``contains``)."""
    out = Grouping()
    groups: dict[str, list[SourceFile]] = {}
    unmatched, contested, keep = out.unmatched, out.contested, out.keep
    fits_of = prefix_matcher(wanted) if match == "prefix" else contains_matcher(wanted)
    for f in files:
        fits = fits_of(f.name)
        if not fits:
            unmatched.append(f.path)
            continue
        if len(fits) > 1:
            contested.append((f.path, tuple(fits)))
            if match == "contains":
                for s in fits:
                    groups.setdefault(s, []).append(f)
                    keep.setdefault(s, set()).add(f.name)
                continue
        g = groups.get(fits[0])
        if g is None:
            groups[fits[0]] = [f]
        else:
            g.append(f)
    out.groups.update(groups)
    return out
