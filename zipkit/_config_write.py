"""Writing a config: the settings of a run (library arguments) as YAML that ``zipkit CONFIG.yml`` runs.

The reverse of :func:`zipkit._config.load_config`; the form's **Save as YAML** uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._errors import UsageError
from ._options import by_name
from ._schema import BY_KEY, OLD_FED, PLAN_ARGS, RUN_ARGS, SCHEMA

__all__ = ["settings_to_yaml"]


def _rel(path: str | os.PathLike[str], relative_to: Path | None) -> str:
    p = os.path.abspath(Path(path).expanduser())
    if relative_to is None:
        return Path(p).as_posix()
    try:
        return Path(os.path.relpath(p, os.path.abspath(relative_to))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(p).as_posix()


def _listed(v: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def _put(tree: dict[str, Any], key: str, value: Any) -> None:
    *sections, name = key.split(".")
    node = tree
    for s in sections:
        node = node.setdefault(s, {})
    node[name] = value


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists (``extension: [csv]``), as the old configs are written."""


_Dumper.add_representer(
    list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def settings_to_yaml(plan_kwargs: Mapping[str, Any], run_kwargs: Mapping[str, Any] | None = None, *,
                     relative_to: Path | None = None) -> str:
    """YAML config text for the given settings, which ``python -m zipkit CONFIG.yml`` runs unchanged.

    The reverse of :func:`load_config`: ``load_config(saved).plan_kwargs`` /
    ``.run_kwargs`` give the same settings back. Old-schema keys are used where the old tool
    has them; the rest go under ``zipkit:``. Only values that differ from the defaults are
    written in ``zipkit:``.

    Parameters
    ----------
    plan_kwargs
        Keyword arguments of :func:`zipkit.plan` (``source`` and ``extensions`` needed).
        ``output=None`` (the source folder, in the library) is written as the source folder.
    run_kwargs
        ``workers``, ``executor`` (``None``, ``"dask"`` or a scheduler address),
        ``progress`` (a bool; a callable is not saved), ``save_error_reports``; ``cancel`` is
        not saved (nor is ``allow_empty`` of ``plan_kwargs``).
    relative_to
        The folder the config will be saved in: paths are written relative to it (the config
        then moves with its folders). ``None``: absolute paths.

    Returns
    -------
    str

    Raises
    ------
    UsageError
        An argument that cannot be saved (an executor object, an unknown argument).

    Examples
    --------
    >>> text = settings_to_yaml({"source": "csv", "extensions": ["csv"], "output": "zip"},
    ...                         {"workers": 4}, relative_to=Path("."))  # doctest: +SKIP
    >>> Path("zip_config.yml").write_text(text)  # doctest: +SKIP
    """
    pk = dict(plan_kwargs)
    rk = dict(run_kwargs or {})
    unknown = [k for k in pk if k not in PLAN_ARGS] + [k for k in rk if k not in RUN_ARGS]
    if unknown:
        raise UsageError(f"settings_to_yaml: unknown argument(s) {', '.join(map(repr, unknown))}")
    for k in ("source", "extensions"):
        if pk.get(k) is None:
            raise UsageError(f"settings_to_yaml: {k!r} is needed")
    tree: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        assert key in BY_KEY, key
        _put(tree, key, value)

    put("default.config.overwrite.output", pk.get("overwrite", "always") != "never")
    put("analysis.input_directory", _rel(pk["source"], relative_to))
    put("analysis.filename.extension", _listed(pk["extensions"]))
    if pk.get("stems_from") is not None:
        put("file_management.input_directory", _rel(pk["stems_from"], relative_to))
        put("file_management.filename.extension", _listed(pk.get("stem_extensions")))
        put("file_management.filename.pattern", pk.get("pattern"))
        put("file_management.filename.filters.contains", _listed(pk.get("contains")) or [])
        put("file_management.filename.filters.not_contains", _listed(pk.get("not_contains")) or [])
        for k in ("regex", "min_size_kb", "max_size_kb"):
            if pk.get(k) is not None:
                put(f"file_management.filename.filters.{k}", pk[k])
    out = pk.get("output")
    put("file_management.output_directory", _rel(out if out is not None else pk["source"], relative_to))

    workers = rk.get("workers", "auto")
    put("parallel_processing.enabled", workers != 1)
    put("parallel_processing.max_workers", "auto" if workers == 1 else workers)
    put("parallel_processing.timeout_per_file", pk.get("timeout"))
    report = rk.get("save_error_reports")
    if report is not None and not isinstance(report, bool):
        report = _rel(report, relative_to)
    put("parallel_processing.save_error_reports", bool(report) if not isinstance(report, str) else report)
    progress = rk.get("progress", True)
    put("parallel_processing.progress_reporting", progress if isinstance(progress, bool) else True)

    if pk.get("overwrite") in ("update", "replace"):
        put("zipkit.overwrite", pk["overwrite"])
    for s in SCHEMA:  # zipkit's own keys of the options no old key says: when not the default
        if not s.key.startswith("zipkit.") or s.feeds in OLD_FED or not by_name(s.feeds).config:
            continue  # executor: said by its YAML spellings below
        value = pk.get(s.feeds) if s.feeds in PLAN_ARGS else rk.get(s.feeds)
        if value is not None and value != s.default and not (s.kind == "bool" and not value):
            put(s.key, _listed(value) if s.kind == "strings" else value)
    executor = rk.get("executor")
    if executor is not None:
        if not isinstance(executor, str):
            raise UsageError("settings_to_yaml: an executor object cannot be saved in a config; "
                             "use None, 'dask' or a scheduler address")
        if executor in ("dask", "dask://local"):
            put("zipkit.executor", "dask")
        else:
            put("zipkit.executor", "dask")
            put("zipkit.scheduler_address", executor)

    head = ("# zipkit config: the old zip_utilities schema, plus zipkit's own options under 'zipkit:'.\n"
            "# Run it with: python -m zipkit THIS_FILE.yml\n"
            "# See what it would do: zipkit --print-config THIS_FILE.yml\n")
    order = ["default", "analysis", "file_management", "parallel_processing", "zipkit"]
    ordered = {k: tree[k] for k in order if k in tree}
    return head + yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                            allow_unicode=True, width=1000)

