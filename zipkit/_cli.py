"""Command line: argument parsing and exit codes only; the work is the library's.

Exit codes: 0 all stems ok, 1 some stems failed, 2 bad usage or config, 130 / 143 / 129 stopped
by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (a run so stopped still prints its report).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._errors import NothingToDo, RunInterrupted, ZipkitError
from ._plan import COMPRESSIONS, MATCH_MODES, OVERWRITE_POLICIES
from ._signals import Stopped, exit_code, signal_name, stop_on_signals

__all__ = ["build_parser", "main", "run_cli"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one readable line, no usage dump
        self.exit(EXIT_USAGE, f"zipkit: error: {message} (see zipkit --help)\n")


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, not {text!r}")
    return n


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    """The ``zipkit`` argument parser (also used to generate the CLI reference)."""
    p = _Parser(
        prog="zipkit",
        description="Zip files by stem, in parallel, with honest progress. "
        "Either zip a folder directly (zipkit SOURCE --ext csv -o OUT) or run an old "
        "zip_utilities YAML config (zipkit CONFIG.yml [OVERRIDE]).",
        epilog="Exit codes: 0 all ok, 1 some stems failed, 2 bad usage or config, 130 / 143 / 129 "
        "stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP.",
    )
    p.add_argument("source", help="folder of files to zip, or a YAML config file")
    p.add_argument("override", nargs="?", help="with a config: a Python literal dict deep-merged into it")
    p.add_argument("-e", "--ext", action="append", metavar="EXT",
                   help="extension to archive (repeat, or comma-separated); case-insensitive")
    p.add_argument("-o", "--output", help="folder for the archives (default: SOURCE)")
    g = p.add_argument_group("stems")
    g.add_argument("--stems-from", metavar="DIR", help="take stems from marker files in DIR")
    g.add_argument("--stem-ext", action="append", metavar="EXT", help="marker file extension (repeat)")
    g.add_argument("--stems", action="append", metavar="NAME", help="stem names given directly (repeat)")
    g.add_argument("--match", choices=MATCH_MODES, default="prefix",
                   help="prefix (default): longest stem + non-alphanumeric; contains: old substring rule")
    g.add_argument("--pattern", help="marker filter: glob *PATTERN*")
    g.add_argument("--contains", action="append", metavar="TEXT", help="marker filter: stem contains (all)")
    g.add_argument("--not-contains", action="append", metavar="TEXT", help="marker filter: stem lacks (all)")
    g.add_argument("--regex", help="marker filter: re.search on the stem")
    g.add_argument("--min-size-kb", type=float, help="marker filter: at least this size")
    g.add_argument("--max-size-kb", type=float, help="marker filter: at most this size")
    a = p.add_argument_group("archives")
    a.add_argument("-c", "--compression", choices=COMPRESSIONS, default="deflate",
                   help="compression method (default deflate)")
    a.add_argument("-l", "--level", type=int, help="compression level 0-9 (deflate default 6)")
    a.add_argument("--overwrite", choices=OVERWRITE_POLICIES, default="always",
                   help="existing archives: always rebuild, never touch, or update when out of date")
    a.add_argument("--verify", action="store_true", help="re-read each archive and check CRCs")
    a.add_argument("--delete-sources", action="store_true",
                   help="delete a stem's files once its archive is in place, fsynced and verified")
    a.add_argument("--reproducible", action="store_true",
                   help="fixed timestamps (SOURCE_DATE_EPOCH) and permissions")
    a.add_argument("--durable", action="store_true", help="fsync every archive")
    a.add_argument("--timeout", type=float, metavar="SECONDS", help="per-stem time limit")
    r = p.add_argument_group("run")
    r.add_argument("-j", "--workers", type=_workers, default=None, help="'auto' (default) or a number")
    r.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler (tcp://host:8786)")
    r.add_argument("-n", "--dry-run", action="store_true", help="show the plan; write nothing")
    r.add_argument("--print-config", action="store_true",
                   help="with a config: show the resolved settings and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--error-report", nargs="?", const=True, metavar="PATH",
                   help="write failures as JSON (default: in the output folder)")
    r.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    r.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    from . import __version__

    r.add_argument("--version", action="version", version=f"zipkit {__version__}")
    return p


def _is_config(path: str) -> bool:
    """A ``.yml``/``.yaml`` argument that is not a folder is a config (a missing one is reported)."""
    return path.lower().endswith((".yml", ".yaml")) and not Path(path).is_dir()


# Options of the direct mode, and the config key that says the same thing.
_CONFIG_KEYS = {
    "ext": "analysis.filename.extension", "output": "file_management.output_directory",
    "stems_from": "file_management.input_directory", "stem_ext": "file_management.filename.extension",
    "stems": "zipkit.stems", "match": "zipkit.match", "pattern": "file_management.filename.pattern",
    "contains": "file_management.filename.filters.contains",
    "not_contains": "file_management.filename.filters.not_contains",
    "regex": "file_management.filename.filters.regex",
    "min_size_kb": "file_management.filename.filters.min_size_kb",
    "max_size_kb": "file_management.filename.filters.max_size_kb",
    "compression": "zipkit.compression", "level": "zipkit.level", "overwrite": "zipkit.overwrite",
    "verify": "zipkit.verify", "delete_sources": "zipkit.delete_sources",
    "reproducible": "zipkit.reproducible", "durable": "zipkit.durable", "timeout": "zipkit.timeout",
}


def _given(argv: Sequence[str] | None) -> dict[str, str]:
    """The options given explicitly on the command line: dest → option string."""
    p = build_parser()
    names = {}
    for action in p._actions:
        action.default = argparse.SUPPRESS
        if action.option_strings:
            names[action.dest] = action.option_strings[-1]
    ns, _ = p.parse_known_args(argv)
    return {dest: names[dest] for dest in vars(ns) if dest in names}


def _refuse_direct_options(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> None:
    for dest, option in _given(argv).items():
        if dest in _CONFIG_KEYS:
            parser.error(f"{option} does not apply to a config file; set {_CONFIG_KEYS[dest]} in the "
                         f"config or in the override")


def _direct_call(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[dict, dict]:
    if args.override is not None:
        parser.error(f"unexpected argument {args.override!r} (an override needs a YAML config)")
    if not args.ext:
        parser.error("give the extensions to archive with --ext (e.g. --ext csv)")
    plan_kw: dict[str, Any] = dict(
        source=args.source, extensions=_split(args.ext), output=args.output,
        stems_from=args.stems_from, stem_extensions=_split(args.stem_ext), stems=_split(args.stems),
        match=args.match, pattern=args.pattern, contains=args.contains, not_contains=args.not_contains,
        regex=args.regex, min_size_kb=args.min_size_kb, max_size_kb=args.max_size_kb,
        overwrite=args.overwrite, compression=args.compression, level=args.level, verify=args.verify,
        delete_sources=args.delete_sources, reproducible=args.reproducible, durable=args.durable,
        timeout=args.timeout,
    )
    run_kw: dict[str, Any] = {"workers": args.workers or "auto", "save_error_reports": args.error_report}
    if args.dask:
        run_kw["dask"] = args.dask
    return plan_kw, run_kw


def run_cli(argv: Sequence[str] | None = None) -> tuple[Any, int]:
    """Run the command line; return ``(report or plan or None, exit code)``.

    SIGINT, SIGTERM and SIGHUP stop it the same way, whenever they come: exit 130, 143, 129.
    """
    with stop_on_signals():
        return _run_cli(argv)


def _run_cli(argv: Sequence[str] | None) -> tuple[Any, int]:
    from ._plan import plan
    from ._run import run_plan

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return None, int(e.code or 0)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="zipkit: %(message)s", stream=sys.stderr)
    try:
        if _is_config(args.source):
            from ._config import load_config

            _refuse_direct_options(argv, parser)
            cfg = load_config(args.source, args.override)
            if args.print_config:
                print(cfg.describe())
                return cfg, EXIT_OK
            plan_kw, run_kw = cfg.plan_kwargs, cfg.run_kwargs
            if args.workers:  # the command line wins over the config for how to run
                run_kw["workers"] = args.workers
            if args.error_report:
                run_kw["save_error_reports"] = args.error_report
            if args.dask:
                run_kw["dask"] = args.dask
        else:
            if args.print_config:
                parser.error("--print-config needs a YAML config file")
            plan_kw, run_kw = _direct_call(args, parser)
        the_plan = plan(**plan_kw)
        if args.dry_run:
            print(the_plan)
            return the_plan, EXIT_OK
        if args.no_progress:
            run_kw["progress"] = False
        dask = run_kw.pop("dask", None)
        if dask:
            run_kw["executor"] = dask
        report = run_plan(the_plan, **run_kw)
    except SystemExit as e:
        return None, int(e.code or 0)
    except RunInterrupted as e:
        print(e.report, file=sys.stderr)
        how = "interrupted" if e.exit_code == EXIT_INTERRUPTED else f"stopped by {signal_name(e.signal)}"
        print(f"zipkit: {how}; finished archives kept, no partial archive left", file=sys.stderr)
        return e.report, e.exit_code
    except KeyboardInterrupt as e:  # before the run began (planning): nothing written
        signum = e.signum if isinstance(e, Stopped) else 2
        how = "interrupted" if signum == 2 else f"stopped by {signal_name(signum)}"
        print(f"zipkit: {how}", file=sys.stderr)
        return None, exit_code(signum)
    except NothingToDo as e:
        print(f"zipkit: {e}", file=sys.stderr)
        return None, EXIT_USAGE
    except ZipkitError as e:
        print(f"zipkit: error: {e}", file=sys.stderr)
        return None, EXIT_USAGE
    print(report.summary_line() if args.quiet else report)
    for r in report.failed:
        print(f"zipkit: {r.status.replace('_', ' ')}: {r.stem}: {r.message}", file=sys.stderr)
    return report, EXIT_OK if not report.failed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    return run_cli(argv)[1]
