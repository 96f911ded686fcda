"""Command line: argument parsing and exit codes only; the work is the library's.

Exit codes: 0 all stems ok, 1 some stems failed, 2 bad usage or config, 130 / 143 / 129 stopped
by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (a run so stopped still prints its report). Output piped
into ``head`` or a closed stdout/stderr never changes them (see :func:`_say`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ._errors import NothingToDo, RunInterrupted, ZipkitError
from ._options import CONVERTERS, OPTIONS, BadValue, Option, by_name, check_values
from ._schema import SCHEMA
from ._signals import Stopped, exit_code, signal_name, stop_on_signals

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import SupportsWrite

__all__ = ["build_parser", "exit_now", "main", "run_cli"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_ROWS = 50  # table rows shown without --all
log = logging.getLogger("zipkit")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one readable line, no usage dump
        self.exit(EXIT_USAGE, f"zipkit: error: {message} (see zipkit --help)\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """--help, --version and usage text; a closed or broken stream is not an error (what
        Python 3.11's argparse does itself, and 3.10's does not)."""
        if message:
            stream = file if file is not None else sys.stderr
            try:
                stream.write(message)
            except (AttributeError, OSError, ValueError):
                _stream_gone(stream)


# --------------------------------------------------------------------------- output streams
_F = TypeVar("_F", bound=Callable[..., Any])


def _to_devnull(fd: int) -> None:
    """Point ``fd`` at /dev/null (kept open: nothing else may take its number)."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _open_standard_streams() -> None:
    """A closed stdin, stdout or stderr (``<&-``, ``>&-``, ``2>&-``) becomes /dev/null.

    Otherwise the first file the run opens takes its number (an archive would receive what is
    printed), and the progress bar writes to ``sys.stderr`` = None.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "w", closefd=False, encoding="utf-8", errors="replace"))


def _stream_gone(stream: Any) -> None:
    """A reader went away (``| head``): later writes and the final flush go to /dev/null."""
    try:
        _to_devnull(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (IPython's streams)
        pass


def _say(text: object, *, err: bool = False) -> None:
    """Print ``text`` to stdout (or stderr); a closed or broken stream is not an error.

    As with ``zip`` or ``ls | head``, what is printed is a courtesy: the archives are written
    and the exit code says how the run went, whether or not anybody reads the output.
    """
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
        _stream_gone(stream)
    except OSError as e:  # EIO on a hung-up terminal, ENOSPC on a full disk …
        log.debug("cannot write to %s: %s", "stderr" if err else "stdout", e)
        _stream_gone(stream)


def _quiet_streams(fn: _F) -> _F:
    """Run ``fn`` with the standard streams open, and flush them before returning, quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _open_standard_streams()
        try:
            return fn(*args, **kwargs)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()  # here, not at exit: Python would say "Exception ignored" and exit 120
                except (OSError, ValueError, AttributeError):
                    _stream_gone(stream)

    return wrapper  # type: ignore[return-value]


class _AboveTheBar(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines printed above the progress bar (``tqdm.write``), not into it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except (OSError, ValueError):  # a closed or broken stderr: nobody reads the log
            _stream_gone(sys.stderr)


def _log_above_the_bar(level: int) -> None:
    handler = _AboveTheBar(sys.stderr)
    handler.setFormatter(logging.Formatter("zipkit: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


#: Options whose values may also be given comma-separated (``--ext csv,txt``).
_SPLIT = frozenset({"extensions", "stem_extensions", "stems"})


def _help(o: Option) -> str:
    """The option's help (``zipkit._options``) as plain text, with how to repeat it and its default."""
    text = re.sub(r"`([^`]*)`", r"\1", o.help).rstrip(".")
    if o.kind in ("extensions", "strings"):
        text += " (repeat, or comma-separated)" if o.name in _SPLIT else " (repeat)"
    if o.default not in (None, False, ()):
        text += f" (default: {o.default})"
    return text


def _how(o: Option) -> dict[str, Any]:
    """The ``add_argument`` keywords for option ``o``, from its kind."""
    if o.kind == "bool":
        return {"action": "store_true"}
    how: dict[str, Any] = {"metavar": o.metavar}
    if o.kind in ("extensions", "strings"):
        how["action"] = "append"
    elif o.kind == "choice":
        how.update(choices=o.choices, metavar=None)
    elif o.kind in CONVERTERS:
        how["type"] = CONVERTERS[o.kind].argparse_type()
    if o.stage == "plan":  # run options stay None: a config's own value is kept unless one is given
        how["default"] = o.default
    return how


def build_parser() -> argparse.ArgumentParser:
    """The ``zipkit`` argument parser (also used to generate the CLI reference)."""
    p = _Parser(
        prog="zipkit",
        description="Zip files by stem, in parallel, with honest progress. "
        "Either zip a folder directly (zipkit SOURCE --ext csv -o OUT) or run an old "
        "zip_utilities YAML config (zipkit CONFIG.yml [OVERRIDE]).",
        epilog="Exit codes: 0 all ok, 1 some stems failed, 2 bad usage or config, 130 / 143 / 129 "
        "stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP. A closed or broken stdout or stderr "
        "(zipkit ... | head) changes neither the run nor its exit code.",
    )
    p.add_argument("source", help="folder of files to zip, or a YAML config file")
    p.add_argument("override", nargs="?", help="with a config: a Python literal dict deep-merged into it")
    groups: dict[str, argparse._ActionsContainer] = {
        "": p, "stems": p.add_argument_group("stems"), "archives": p.add_argument_group("archives"),
        "run": p.add_argument_group("run")}
    for o in OPTIONS:  # the options of the library that the command line takes: from the table
        if o.cli:
            groups[o.group].add_argument(*o.cli, dest=o.name, help=_help(o), **_how(o))
    r = groups["run"]
    r.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler (tcp://host:8786)")
    r.add_argument("-n", "--dry-run", action="store_true", help="show the plan; write nothing")
    r.add_argument("-a", "--all", action="store_true",
                   help="show every stem in the plan and report tables (default: the first 50)")
    r.add_argument("--print-config", action="store_true",
                   help="with a config: show the resolved settings and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--error-report", nargs="?", const=True, metavar="PATH",
                   help="write failures as JSON to PATH, or without PATH to "
                   "OUTPUT/zipkit-errors-TIME.json (default: no report)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the summary line (what was deleted included); no progress bar")
    r.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    from . import __version__

    r.add_argument("--version", action="version", version=f"zipkit {__version__}")
    return p


def _is_config(path: str) -> bool:
    """A ``.yml``/``.yaml`` argument that is not a folder is a config (a missing one is reported)."""
    return path.lower().endswith((".yml", ".yaml")) and not Path(path).is_dir()


def _config_key(name: str) -> str:
    """The config key that sets the same thing as option ``name``: its ``zipkit:`` key, or the old
    key that feeds it."""
    if by_name(name).config:
        return f"zipkit.{name}"
    return next(s.key for s in SCHEMA if s.feeds == name)


#: Options of the direct mode (``dest``: the option's name), and the config key that says the same thing.
_CONFIG_KEYS = {o.name: _config_key(o.name) for o in OPTIONS if o.cli and o.stage == "plan"}


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


def _direct_call(args: argparse.Namespace, parser: argparse.ArgumentParser,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    if args.override is not None:
        parser.error(f"unexpected argument {args.override!r} (an override needs a YAML config)")
    if not args.extensions:
        parser.error("give the extensions to archive with --ext (e.g. --ext csv)")
    joint = ("min_size_kb", "max_size_kb", "level", "compression")
    try:  # the checks that join two options, named as the command line names them
        check_values({k: getattr(args, k) for k in joint},
                         {k: by_name(k).cli[-1] for k in joint})
    except BadValue as e:
        parser.error(str(e))
    plan_kw: dict[str, Any] = {"source": args.source}
    for name in _CONFIG_KEYS:
        value = getattr(args, name)
        plan_kw[name] = _split(value) if name in _SPLIT else value
    run_kw: dict[str, Any] = {"workers": args.workers or "auto", "save_error_reports": args.error_report}
    if args.dask:
        run_kw["dask"] = args.dask
    return plan_kw, run_kw


@_quiet_streams
def run_cli(argv: Sequence[str] | None = None, *, exiting: bool = False) -> tuple[Any, int]:
    """Run the command line; return ``(report or plan or None, exit code)``.

    SIGINT, SIGTERM and SIGHUP stop it the same way, whenever they come: exit 130, 143, 129.
    ``exiting``: the process ends with that code next (``zipkit``, ``python -m zipkit``), so once
    stopped, a later signal (SIGTERM then Ctrl-C) exits at once with the same code.
    """
    with stop_on_signals(exiting=exiting):
        try:
            return _run_cli(argv)
        except Stopped as e:  # while the report was printed: the run itself is complete
            for stream in (sys.stdout, sys.stderr):  # unprinted text would block the exit on a
                _stream_gone(stream)                 # stalled reader: it goes to /dev/null
            return None, exit_code(e.signum)


def _run_cli(argv: Sequence[str] | None) -> tuple[Any, int]:
    from ._plan import plan
    from ._run import run_plan

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return None, int(e.code or 0)
    _log_above_the_bar((logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)])
    try:
        if _is_config(args.source):
            from ._config import load_config

            _refuse_direct_options(argv, parser)
            cfg = load_config(args.source, args.override, require_folders=not args.print_config)
            if args.print_config:
                _say(cfg.describe())
                return cfg, EXIT_OK
            plan_kw, run_kw = cfg.plan_kwargs, cfg.run_kwargs
            plan_kw["inputs"] = [cfg.path]  # the config is never an output
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
            _say(the_plan.to_text(max_rows=None if args.all else _ROWS))
            _more_rows_hint(len(the_plan.stems), args.all)
            return the_plan, EXIT_OK
        if args.no_progress or args.quiet:
            run_kw["progress"] = False
        dask = run_kw.pop("dask", None)
        if dask:
            run_kw["executor"] = dask
        report = run_plan(the_plan, **run_kw)
    except SystemExit as e:
        return None, int(e.code or 0)
    except RunInterrupted as e:
        _say(e.report, err=True)
        how = "interrupted" if e.exit_code == EXIT_INTERRUPTED else f"stopped by {signal_name(e.signal)}"
        _say(f"zipkit: {how}; finished archives kept, no partial archive left", err=True)
        return e.report, e.exit_code
    except KeyboardInterrupt as e:  # before the run began (planning): nothing written
        signum = e.signum if isinstance(e, Stopped) else 2
        how = "interrupted" if signum == 2 else f"stopped by {signal_name(signum)}"
        _say(f"zipkit: {how}", err=True)
        return None, exit_code(signum)
    except NothingToDo as e:
        _say(f"zipkit: {e}", err=True)
        return None, EXIT_USAGE
    except ZipkitError as e:
        _say(f"zipkit: error: {e}", err=True)
        return None, EXIT_USAGE
    _say(report.summary_line() if args.quiet else report.to_text(max_rows=None if args.all else _ROWS))
    if not args.quiet:
        _more_rows_hint(len(report.results), args.all)
    for r in report.ok:  # members removed on request are said even with -q, as deletions are
        if r.dropped:
            _say(f"zipkit: replace: {r.archive} no longer holds {len(r.dropped)} member(s): "
                 + ", ".join(r.dropped), err=True)
    return report, EXIT_OK if not report.failed else EXIT_FAILED


def _more_rows_hint(rows: int, shown_all: bool) -> None:
    if rows > _ROWS and not shown_all:
        _say(f"(the table shows {_ROWS} of {rows} stems; --all shows every one)")


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    code = run_cli(argv, exiting=True)[1]
    if code in (129, 130, 143):
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End a stopped CLI process with ``code`` now, its output flushed: interpreter shutdown
    (tens of ms) would leave a window where a second signal (SIGTERM, then Ctrl-C) kills it
    with another status."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
