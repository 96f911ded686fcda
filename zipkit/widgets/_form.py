"""The form's controller: its buttons, the background run, progress, Cancel, YAML.

The controls are made in ``_layout``; the mapping of their values to the library's options is
``_settings``. The form talks to the library only through :func:`zipkit.plan` and
:func:`zipkit.run_plan`: **Preview** shows the :class:`~zipkit.Plan`, **Zip** runs it in a
background thread (progress through the ``progress`` callable, **Cancel** through the
``cancel`` event) and shows the :class:`~zipkit.Report`. Every control carries a stable CSS
class (``zipkit-source``, ``zipkit-zip`` …, listed in :attr:`ZipForm.CSS_CLASSES`) so that it
can be found in a browser. With ``root`` set (as when the form is served by Voilà) every folder
and config path must lie inside ``root``; others are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .._errors import UsageError, ZipkitError
from .._options import check_values
from .._plan import Plan, plan
from .._report import Report, check_error_report_path
from .._run import ProgressEvent, available_cpus, run_plan
from .._signals import cancel_on_signals
from .._table import format_bytes
from ._layout import FormLayout, _esc
from ._render import clock, downloads, live_state, stems, timing
from ._settings import MARKERS as _MARKERS
from ._settings import FormError, check, form_words, from_kwargs, resolve_path
from ._settings import as_list as _as_list
from ._settings import plan_kwargs as _plan_kwargs
from ._settings import run_kwargs as _run_kwargs

__all__ = ["ZipForm"]

log = logging.getLogger("zipkit")

_UI_INTERVAL = 0.1  # seconds between progress redraws (a callable may be called per MiB)


class ZipForm(FormLayout):
    """A form to zip files by stem: folders, extensions, stems, options, Preview, Zip, Cancel.

    Parameters
    ----------
    source
        Folder of the files to zip; its extensions are offered with file counts and sizes.
        Default: ``root`` when given, else empty.
    root
        When set, every folder and config path must be inside this folder (relative paths are
        taken from it); others are refused. Use it when the form is served (Voilà).
    output
        Folder for the archives; empty means the source folder.
    extensions
        Extensions selected at the start.
    stems_from, stem_extensions
        Take stems from marker files in this folder (switches the stem mode to markers).
    contains, not_contains, pattern, regex, match
        Marker filters and the match mode, as in :func:`zipkit.plan`.
    compression, level, overwrite, verify, reproducible
        As in :func:`zipkit.plan`.
    workers
        1 … the CPUs this process may use; default all of them (saved as ``auto``).
    config
        A YAML config to load into the form at the start.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole form; displaying the ``ZipForm`` displays it.
    plan : zipkit.Plan or None
        The last plan shown or run.
    report : zipkit.Report or None
        The report of the last run.
    message : str
        The last status line as plain text.

    Examples
    --------
    >>> form = ZipForm(source="output/csv", extensions=["csv"], output="output/zip")  # doctest: +SKIP
    >>> form.preview_button.click(); form.plan.summary_line()                        # doctest: +SKIP
    >>> form.zip_button.click(); form.wait().success                                 # doctest: +SKIP
    True
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        output: str | os.PathLike[str] | None = None,
        extensions: str | Sequence[str] | None = None,
        stems_from: str | os.PathLike[str] | None = None,
        stem_extensions: str | Sequence[str] | None = None,
        contains: str | Sequence[str] | None = None,
        not_contains: str | Sequence[str] | None = None,
        pattern: str | None = None,
        regex: str | None = None,
        match: str = "prefix",
        compression: str = "deflate",
        level: int | None = None,
        overwrite: str = "always",
        verify: bool = False,
        reproducible: bool = False,
        workers: int | str | None = None,
        config: str | os.PathLike[str] | None = None,
    ) -> None:
        check_values({"match": match, "compression": compression, "overwrite": overwrite, "level": level,
                          "workers": workers})
        self.root: Path | None = Path(root).expanduser().resolve() if root is not None else None
        self.cpus = available_cpus()  # at call time, never at import
        self.plan: Plan | None = None
        self.report: Report | None = None
        self.message = ""
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._pending: Plan | None = None  # a plan waiting for the delete confirmation
        self._extra_plan: dict[str, Any] = {}  # config settings the form has no control for
        self._extra_run: dict[str, Any] = {}
        self._last_draw = 0.0
        self._quiet = 0  # > 0 while the form itself changes controls
        self._started = 0.0  # time.monotonic() when the run began
        self._stem_state: dict[str, str] = {}  # stem → queued, zipping, done, failed …
        self._cancelled_here = False
        self._build(source, output, stems_from, contains, not_contains, pattern, regex, match,
                    compression, overwrite, verify, reproducible)

        # -- behaviour -----------------------------------------------------------------------
        self.source.observe(lambda _: self.scan(), "value")
        self.markers.observe(lambda _: self._scan_markers(), "value")
        self.scan_button.on_click(lambda _: self._guard(self.scan))
        self.stem_mode.observe(lambda _: self._show_mode(), "value")
        self.compression.observe(lambda _: self._set_levels(), "value")
        self.preview_button.on_click(lambda _: self._guard(self.preview))
        self.zip_button.on_click(lambda _: self._guard(self.start))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.confirm_delete.on_click(lambda _: self._guard(self._confirmed))
        self.keep_sources.on_click(lambda _: self._drop_pending("not run: sources kept"))
        self.save_button.on_click(lambda _: self._guard(self.save_yaml, "config_path"))
        self.load_button.on_click(lambda _: self._guard(self.load_yaml, "config_path"))
        for control in self.inputs():
            if control not in self.pickers.values():
                control.observe(self._input_changed, "value")
        for name, picker in self.pickers.items():
            getattr(self, name).observe(lambda _, n=name: self._fill_picker(n), "value")
            picker.observe(lambda change, n=name: self._picked(n, change["new"]), "value")
            self._fill_picker(name)

        self._set_levels(level)
        self._show_mode()
        if workers is not None:
            self._set_workers(workers)
        self._say_scan([self._safe_scan("source", _as_list(extensions)),
                        self._safe_scan("markers", _as_list(stem_extensions))])
        if config is not None:
            self.config_path.value = str(config)
            self._guard(self.load_yaml, "config_path")

    # -- display -----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)  # short and stable: saved notebooks compare it
        return data

    def __repr__(self) -> str:
        return f"ZipForm(root={str(self.root) if self.root else None!r})"

    def display(self) -> None:
        """Show the form in the notebook (the same as leaving ``form`` last in a cell)."""
        from IPython.display import display

        display(self)  # type: ignore[no-untyped-call, unused-ignore]  # IPython: display() is not annotated

    # -- helpers -----------------------------------------------------------------------------
    def _guard(self, action: Callable[[], object], field: str | None = None) -> None:
        """Run a button's action; show what went wrong (on the fields at fault and the status line)
        instead of raising. ``field``: the field an error of this action belongs to."""
        try:
            action()
        except FormError as e:
            self._show_errors(e.fields)
            if len(e.fields) == 1:
                self._say(f"error: {e}", "error")
            else:  # each message is beside its field; the status line names them
                names = ", ".join(getattr(self, f).description for f in e.fields)
                self._say(f"error: fix the {len(e.fields)} marked fields ({names})", "error")
        except ZipkitError as e:
            text = form_words(str(e))
            if field is not None:
                self._mark(field, text)
            self._say(f"error: {text}", "error")
        except Exception as e:  # the form must not die on an unexpected error; say it, log it
            log.exception("zipkit form: %s failed", getattr(action, "__name__", "action"))
            self._say(f"error: {type(e).__name__}: {e}", "error")

    def _input_changed(self, _change: object = None) -> None:
        """A person changed a control: withdraw the delete question, clear marks on fields now
        fixed, and clear results that no longer describe the form."""
        if self._quiet:
            return
        self._drop_pending()
        marked = self.marked()
        if marked:
            bad = check(self.values(), self.root)
            for name in marked:
                if name != "config_path":
                    self._mark(name, bad.get(name))
            if not self.marked() and self.message.startswith("error:"):
                self._say("")
        if not self._busy() and (self.result.value or self.downloads.value):
            self.result.value = self.downloads.value = self.stems.value = self.progress_text.value = ""
            self.progress.value, self.progress.bar_style = 0.0, ""
            if not self.message.startswith("error:"):
                self._say("")

    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- scanning ----------------------------------------------------------------------------
    def scan(self) -> None:
        """Look at the source (and marker) folder again and offer the extensions found there."""
        errors = [self._safe_scan("source")]
        if self.stem_mode.value == _MARKERS:
            errors.append(self._safe_scan("markers"))
        self._say_scan(errors)

    def _scan_markers(self) -> None:
        self._say_scan([self._safe_scan("markers")])

    # -- settings ----------------------------------------------------------------------------
    def plan_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`zipkit.plan` that the form's controls give.

        Raises
        ------
        zipkit.UsageError
            A folder is missing or outside ``root``, or no extension is picked.
        """
        return _plan_kwargs(self.values(), self.root, self._extra_plan)

    def run_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`zipkit.run_plan` that the form gives (not progress or cancel)."""
        return _run_kwargs(self.values(), self._extra_run)

    # -- preview -----------------------------------------------------------------------------
    def preview(self) -> Plan:
        """Work out the plan from the form and show it; write nothing."""
        if self._busy():
            raise UsageError("a run is in progress; cancel it or wait for it to finish")
        self._drop_pending()
        p = plan(**self.plan_kwargs())
        self.plan = p
        self.result.value = p._repr_html_()
        self._say(f"preview: {p.summary_line()}", "ok")
        return p

    # -- zip ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Zip as the form says, in a background thread (asks first when deleting sources)."""
        if self._busy():
            raise UsageError("a run is in progress; cancel it or wait for it to finish")
        self._drop_pending()
        if self.delete_sources.value:
            p = plan(**self.plan_kwargs())
            self.plan = p
            self.result.value = p._repr_html_()
            doomed = [f for s in p.to_write for f in s.files if f.name not in s.keep]
            self._pending = p
            self.confirm_text.value = (
                f"<b>Delete {len(doomed)} source file(s) ({_esc(format_bytes(sum(f.size for f in doomed)))})"
                f"</b> from <code>{_esc(p.source)}</code>, each only after its archive is written, "
                "fsynced and verified? A stem that fails keeps all its files.")
            self.confirm_box.layout.display = ""
            self._say("confirm: delete sources after archiving?", "busy")
            return
        self._launch(None)

    def _confirmed(self) -> None:
        p = self._pending
        if p is None:
            raise UsageError("nothing to confirm: press Zip again")
        self._pending = None
        self.confirm_box.layout.display = "none"
        self._launch(p)

    def _drop_pending(self, say: str | None = None) -> None:
        if self._pending is not None or say:
            self._pending = None
            self.confirm_box.layout.display = "none"
            if say:
                self._say(say)

    def _launch(self, ready: Plan | None) -> None:
        plan_kw = None if ready is not None else self.plan_kwargs()  # errors show before any thread
        self._show_errors({})
        # The form writes the error report itself, and only when a stem failed (not on Cancel).
        run_kw = {**self.run_kwargs(), "save_error_reports": None}
        self._cancel, self._cancelled_here = threading.Event(), False  # a signal cancels, not here
        self.report = None
        self.result.value = self.downloads.value = self.stems.value = self.progress_text.value = ""
        self.progress.value, self.progress.max, self.progress.bar_style = 0.0, 1.0, ""
        self.progress.layout.display = ""
        self._set_running(True)
        self._say("planning …", "busy")
        self._thread = threading.Thread(target=self._work, args=(ready, plan_kw, run_kw, self._cancel),
                                        name="zipkit-form", daemon=True)
        self._thread.start()
        cancel_on_signals(self._cancel, self._thread)  # SIGTERM/SIGHUP: cancel, clean up, then exit

    def _work(self, ready: Plan | None, plan_kw: dict[str, Any] | None, run_kw: dict[str, Any],
              cancel: threading.Event) -> None:
        report = None
        try:
            p = ready if ready is not None else plan(**(plan_kw or {}))
            self.plan = p
            self.progress.max = max(1, p.total_bytes)
            self._stem_state = {s.stem: "queued" for s in p.to_write}
            self._started = time.monotonic()
            self._say(f"zipping {len(p.to_write)} stem(s), {format_bytes(p.total_bytes)} …", "busy")
            self.stems.value = stems(self._stem_state)
            report = run_plan(p, progress=self._on_progress, cancel=cancel, **run_kw)
            # JSON when a stem failed or a signal stops the process, not after a Cancel pressed here
            if report.failed or (report.cancelled and not self._cancelled_here):
                where = check_error_report_path(  # never over a file that is not one of ours
                    p.output / f"zipkit-errors-{datetime.now():%Y%m%d-%H%M%S}.json", {})
                report = dataclasses.replace(report, error_report=report.save_error_report(where))
        except ZipkitError as e:
            self._say(f"error: {form_words(str(e))}", "error")
            self.progress.bar_style = "danger"
        except Exception as e:  # a thread has no caller to raise to: say it on the form, log it
            log.exception("zipkit form: run failed")
            self._say(f"error: {type(e).__name__}: {e}", "error")
            self.progress.bar_style = "danger"
        finally:
            self._set_running(False)  # before the result shows: whoever sees it can act again
        if report is not None:
            self._show_report(report)

    def _on_progress(self, ev: ProgressEvent) -> None:
        if ev.result is not None:
            self._stem_state[ev.result.stem] = live_state(ev.result.status)
        elif ev.stem is not None and self._stem_state.get(ev.stem) == "queued":
            self._stem_state[ev.stem] = "zipping"
        now = time.monotonic()
        if ev.result is None and now - self._last_draw < _UI_INTERVAL:
            return
        self._last_draw = now
        self.progress.max = max(1, ev.bytes_total)
        self.progress.value = min(ev.bytes_done, ev.bytes_total)
        pct = f" ({ev.bytes_done / ev.bytes_total:.0%})" if ev.bytes_total else ""
        failed = f", {ev.failed} failed" if ev.failed else ""
        elapsed = now - self._started
        eta = timing(ev.bytes_done, ev.bytes_total, elapsed)
        cancelling = " — cancelling …" if self._cancel is not None and self._cancel.is_set() else ""
        self.progress_text.value = _esc(eta)
        self._say(f"zipping: {ev.stems_done}/{ev.stems_total} stems, {format_bytes(ev.bytes_done)} of "
                  f"{format_bytes(ev.bytes_total)}{pct}{failed}, {eta}{cancelling}", "busy")
        self.stems.value = stems(self._stem_state)

    def _show_report(self, report: Report) -> None:
        self.report = report
        parts = [report._repr_html_()]  # its summary line says what was deleted, if anything
        if report.error_report is not None:
            parts.append(f"<p class='zipkit-error-report'>error report: "
                         f"<code>{_esc(report.error_report)}</code></p>")
        self.result.value = "".join(parts)
        self.downloads.value = downloads(report)
        for r in report.results:  # stems that never ran (cancelled) send no event of their own
            self._stem_state[r.stem] = live_state(r.status)
        elapsed = time.monotonic() - self._started
        self.progress_text.value = _esc(f"{format_bytes(report.bytes_in)} in {clock(elapsed)}, "
                                        f"{format_bytes(report.throughput)}/s")
        self.stems.value = stems(self._stem_state)
        if report.deleted_files:  # the counts offered no longer hold: the deleted files are gone
            self._say_scan([self._safe_scan("source")])
        if report.cancelled:
            self.progress.bar_style = "warning"
            done = len(report.ok)
            again = (f"; press Zip again for the {len(report.cancelled)} cancelled stem(s)"
                     + (" (existing archives: “update” skips the "
                        f"{done} already written)" if done and self.overwrite.value != "update" else ""))
            self._say(f"cancelled: {report.summary_line()}{again}", "error")
        elif report.failed:
            self.progress.bar_style = "danger"
            self._say(f"done with failures: {report.summary_line()}", "error")
        else:
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            self._say(f"done: {report.summary_line()}", "ok")

    def cancel(self) -> None:
        """Stop the run: no new stems start, workers stop, temp files go; the report says what ran."""
        if self._busy() and self._cancel is not None:
            self._cancelled_here = True
            self._cancel.set()
            self._say(f"cancelling … ({self.message})", "busy")
        else:
            self._drop_pending("nothing to cancel" if self._pending is None else "not run: sources kept")

    def wait(self, timeout: float | None = None) -> Report | None:
        """Wait for the run started by **Zip** to end; return its report (None if it could not run).

        Raises
        ------
        TimeoutError
            The run is still going after ``timeout`` seconds.
        """
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError(f"the zipkit run is still going after {timeout} s")
        return self.report

    # -- YAML --------------------------------------------------------------------------------
    def save_yaml(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the form's settings as a config that ``python -m zipkit CONFIG.yml`` runs.

        ``path`` defaults to the config field. Folders are written relative to the config's folder.
        """
        from .._config_write import settings_to_yaml

        target = resolve_path(str(path) if path is not None else self.config_path.value,
                              "config file", self.root)
        if target.suffix.lower() not in (".yml", ".yaml"):
            raise UsageError(f"config file {target} must end in .yml or .yaml")
        text = settings_to_yaml(self.plan_kwargs(), self.run_kwargs(), relative_to=target.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.config_path.value = str(target)
        self._say(f"saved {target}; run it with: python -m zipkit {target.name}", "ok")
        return target

    def load_yaml(self, path: str | os.PathLike[str] | None = None) -> None:
        """Fill the form from a YAML config (zipkit's or the old tool's schema)."""
        from .._config import load_config

        source = resolve_path(str(path) if path is not None else self.config_path.value,
                              "config file", self.root)
        cfg = load_config(source)
        plan_kw, run_kw = dict(cfg.plan_kwargs), dict(cfg.run_kwargs)
        self._say("")
        notes = self.apply(plan_kw, run_kw)
        self.config_path.value = str(source)
        if self.message.startswith("error:"):  # e.g. a folder of the config is outside root
            self._say(f"loaded {source}, but {self.message}", "error")
            return
        extra = ", ".join(f"{k}={v!r}" for k, v in {**self._extra_plan, **self._extra_run}.items())
        self._say(f"loaded {source}" + (f" (also kept: {extra})" if extra else "")
                  + "".join(f"; {n}" for n in notes), "ok")

    def apply(self, plan_kwargs: dict[str, Any], run_kwargs: dict[str, Any] | None = None) -> list[str]:
        """Set the controls from :func:`zipkit.plan` / :func:`zipkit.run_plan` arguments.

        Settings the form has no control for (``timeout``, ``durable``, size filters …) are
        kept and passed on unchanged. Returns notes on settings that the form cannot honour.
        """
        loaded = from_kwargs(plan_kwargs, run_kwargs)  # checks all before touching a control
        v = loaded.values
        notes: list[str] = []
        self._drop_pending()
        self.stem_mode.value = v.stem_mode
        self.markers.value = v.markers
        errors = [self._safe_scan("markers", v.marker_extensions)]
        self.contains.value = v.contains
        self.not_contains.value = v.not_contains
        self.pattern.value = v.pattern
        self.regex.value = v.regex
        self.match.value = v.match
        self.source.value = v.source
        errors.append(self._safe_scan("source", v.extensions))
        self._say_scan(errors)
        self.output.value = v.output
        self.overwrite.value = v.overwrite
        self.compression.value = v.compression
        self._set_levels(v.level)
        self.verify.value = v.verify
        self.reproducible.value = v.reproducible
        self.delete_sources.value = v.delete_sources
        self._extra_plan = loaded.extra_plan
        self._set_workers(v.workers)
        self._extra_run = loaded.extra_run
        self.plan = None
        return notes
