"""A form for zipkit in Jupyter and Voilà: pick folders and options, preview the plan, zip, cancel.

Importing this module imports ipywidgets (``pip install zipkit[notebook]``); ``import zipkit``
alone does not.

>>> from zipkit.widgets import ZipForm
>>> form = ZipForm(source="output/csv", extensions=["csv"], output="output/zip")  # doctest: +SKIP
>>> form                                                                           # doctest: +SKIP

The form talks to the library only through :func:`zipkit.plan` and :func:`zipkit.run_plan`: the
**Preview** button shows the :class:`~zipkit.Plan`, **Zip** runs it in a background thread
(progress through the ``progress`` callable, **Cancel** through the ``cancel`` event) and shows
the :class:`~zipkit.Report`. Every control carries a stable CSS class (``zipkit-source``,
``zipkit-zip`` …, listed in :attr:`ZipForm.CSS_CLASSES`) so that it can be found in a browser.
With ``root`` set (as when the form is served by Voilà) every folder and config path must lie
inside ``root``; others are refused.
"""

from __future__ import annotations

import html
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from . import _options as opt
from ._errors import UsageError, ZipkitError
from ._plan import COMPRESSIONS, MATCH_MODES, OVERWRITE_POLICIES, TEMP_PREFIX, Plan, plan
from ._report import Report
from ._run import ProgressEvent, available_cpus, run_plan
from ._signals import cancel_on_signals
from ._table import format_bytes

__all__ = ["ZipForm", "scan_extensions"]

log = logging.getLogger("zipkit")

_DEFAULT_LEVEL = -1  # the level dropdown's "default" entry (the compressor's own default)
_UI_INTERVAL = 0.1  # seconds between progress redraws (a callable may be called per MiB)
_OWN, _MARKERS = "own", "markers"


def scan_extensions(folder: str | os.PathLike[str]) -> list[tuple[str, int, int]]:
    """The extensions of the regular files directly in ``folder``: ``(ext, count, bytes)``.

    Extensions are lower-case and without the dot, sorted by name; files without an
    extension and zipkit's temp files are left out.

    Examples
    --------
    >>> scan_extensions("output/csv")  # doctest: +SKIP
    [('csv', 33, 2011234)]
    """
    found: dict[str, list[int]] = {}
    with os.scandir(folder) as entries:
        for e in entries:
            name = e.name
            if name.startswith(TEMP_PREFIX) or "." not in name.lstrip("."):
                continue
            try:
                if not e.is_file():
                    continue
                size = e.stat().st_size
            except OSError:  # vanished or unreadable: not offered
                continue
            ext = name.rsplit(".", 1)[1].lower()
            if not ext:
                continue
            slot = found.setdefault(ext, [0, 0])
            slot[0] += 1
            slot[1] += size
    return [(ext, n, size) for ext, (n, size) in sorted(found.items())]


def _words(text: str) -> list[str]:
    """``"a, b ,,c"`` → ``['a', 'b', 'c']``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _esc(text: object) -> str:
    return html.escape(str(text))


class ZipForm:
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

    CSS_CLASSES: tuple[str, ...] = (
        "zipkit-form", "zipkit-root", "zipkit-source", "zipkit-scan", "zipkit-extensions",
        "zipkit-stem-mode", "zipkit-markers-box", "zipkit-markers", "zipkit-marker-extensions",
        "zipkit-contains", "zipkit-not-contains", "zipkit-pattern", "zipkit-regex", "zipkit-match",
        "zipkit-output", "zipkit-compression", "zipkit-level", "zipkit-workers", "zipkit-overwrite",
        "zipkit-verify", "zipkit-reproducible", "zipkit-delete-sources", "zipkit-confirm",
        "zipkit-confirm-text", "zipkit-confirm-delete", "zipkit-keep-sources", "zipkit-preview",
        "zipkit-zip", "zipkit-cancel", "zipkit-config-path", "zipkit-save-yaml", "zipkit-load-yaml",
        "zipkit-progress", "zipkit-status", "zipkit-result",
    )

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
        opt.choice(match, MATCH_MODES, "match")
        opt.choice(compression, COMPRESSIONS, "compression")
        opt.choice(overwrite, OVERWRITE_POLICIES, "overwrite")
        opt.compression_level(level, compression)
        opt.WORKERS(workers, "workers")
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
        wide = w.Layout(width="46em")
        style = {"description_width": "11em"}

        def text(name: str, description: str, placeholder: str = "", value: object = None) -> w.Text:
            t = w.Text(value="" if value is None else str(value), description=description,
                       placeholder=placeholder, continuous_update=False, layout=wide, style=style)
            return self._tag(t, name)

        # -- folders and stems ---------------------------------------------------------------
        start = source if source is not None else (self.root if self.root is not None else None)
        self.root_label = self._tag(w.HTML(
            f"files are read and written only inside <code>{_esc(self.root)}</code>" if self.root else ""),
            "root")
        self.source = text("source", "source folder", "folder of the files to zip", start)
        self.scan_button = self._tag(w.Button(description="Rescan", tooltip="look at the folder again"),
                                     "scan")
        self.extensions = self._tag(w.SelectMultiple(options=[], description="extensions", rows=5,
                                                     layout=wide, style=style), "extensions")
        self.stem_mode = self._tag(w.RadioButtons(
            options=[("one archive per file stem (run1.dat + run1.log → run1.zip)", _OWN),
                     ("stems from marker files in another folder", _MARKERS)],
            value=_MARKERS if stems_from is not None else _OWN, description="stems", style=style,
            layout=wide), "stem-mode")
        self.markers = text("markers", "marker folder", "folder of the marker files (e.g. models)",
                            stems_from)
        self.marker_extensions = self._tag(w.SelectMultiple(options=[], description="marker extensions",
                                                            rows=3, layout=wide, style=style),
                                           "marker-extensions")
        self.contains = text("contains", "stem contains", "all of these, comma-separated",
                             ", ".join(_as_list(contains)))
        self.not_contains = text("not-contains", "stem lacks", "none of these, comma-separated",
                                 ", ".join(_as_list(not_contains)))
        self.pattern = text("pattern", "stem pattern", "glob *PATTERN* on the marker stem", pattern)
        self.regex = text("regex", "stem regex", "re.search on the marker stem", regex)
        self.match = self._tag(w.Dropdown(options=[
            ("prefix: longest stem + non-alphanumeric", "prefix"),
            ("contains: old substring rule", "contains")], value=match, description="match",
            style=style, layout=w.Layout(width="34em")), "match")
        self.markers_box = self._tag(w.VBox([self.markers, self.marker_extensions, self.contains,
                                             self.not_contains, self.pattern, self.regex, self.match]),
                                     "markers-box")
        self.output = text("output", "output folder", "empty: the source folder", output)

        # -- archive options -----------------------------------------------------------------
        self.compression = self._tag(w.Dropdown(options=list(COMPRESSIONS), value=compression,
                                                description="compression", style=style), "compression")
        self.level = self._tag(w.Dropdown(options=[("default", _DEFAULT_LEVEL)], value=_DEFAULT_LEVEL,
                                          description="level", style=style), "level")
        self.workers = self._tag(w.IntSlider(value=self.cpus, min=1, max=self.cpus, description="workers",
                                             tooltip=f"1 … {self.cpus}; all CPUs is saved as 'auto'",
                                             style=style), "workers")
        self.overwrite = self._tag(w.Dropdown(options=[
            ("always: merge into existing archives (as zip)", "always"),
            ("update: merge only into out-of-date archives", "update"),
            ("never: skip existing archives", "never"),
            ("replace: rebuild, dropping other members", "replace")], value=overwrite,
            description="existing archives", style=style, layout=w.Layout(width="34em")), "overwrite")
        self.verify = self._tag(w.Checkbox(value=verify, description="verify every archive (CRCs)",
                                           indent=False), "verify")
        self.reproducible = self._tag(w.Checkbox(value=reproducible, indent=False,
                                                 description="reproducible (fixed timestamps)"),
                                      "reproducible")
        self.delete_sources = self._tag(w.Checkbox(value=False, indent=False,
                                                   description="delete sources after archiving (asks first)"),
                                        "delete-sources")
        self.confirm_text = self._tag(w.HTML(), "confirm-text")
        self.confirm_delete = self._tag(w.Button(description="Zip and delete sources", button_style="danger",
                                                 icon="trash"), "confirm-delete")
        self.keep_sources = self._tag(w.Button(description="Keep them, do not run"), "keep-sources")
        self.confirm_box = self._tag(w.VBox([self.confirm_text, w.HBox([self.confirm_delete,
                                                                         self.keep_sources])],
                                            layout=w.Layout(display="none")), "confirm")

        # -- actions, progress, result -------------------------------------------------------
        self.preview_button = self._tag(w.Button(description="Preview", icon="eye",
                                                 tooltip="show what would be written"), "preview")
        self.zip_button = self._tag(w.Button(description="Zip", icon="file-archive-o",
                                             button_style="primary"), "zip")
        self.cancel_button = self._tag(w.Button(description="Cancel", icon="stop", disabled=True,
                                                button_style="warning"), "cancel")
        self.config_path = text("config-path", "YAML config", "e.g. zip_job.yml")
        self.save_button = self._tag(w.Button(description="Save as YAML", icon="save"), "save-yaml")
        self.load_button = self._tag(w.Button(description="Load YAML", icon="folder-open"), "load-yaml")
        self.progress = self._tag(w.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                                  layout=w.Layout(width="46em")), "progress")
        self.status = self._tag(w.HTML(), "status")
        self.result = self._tag(w.HTML(), "result")

        options = w.VBox([
            w.HBox([self.compression, self.level]),
            self.workers, self.overwrite,
            w.HBox([self.verify, self.reproducible, self.delete_sources]),
        ])
        self.widget = self._tag(w.VBox([
            self.root_label,
            w.HBox([self.source, self.scan_button]),
            self.extensions,
            self.stem_mode,
            self.markers_box,
            self.output,
            options,
            w.HBox([self.preview_button, self.zip_button, self.cancel_button]),
            self.confirm_box,
            w.HBox([self.config_path, self.save_button, self.load_button]),
            self.progress,
            self.status,
            self.result,
        ]), "form")

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
        self.save_button.on_click(lambda _: self._guard(self.save_yaml))
        self.load_button.on_click(lambda _: self._guard(self.load_yaml))
        for control in (self.source, self.extensions, self.stem_mode, self.markers, self.marker_extensions,
                        self.contains, self.not_contains, self.pattern, self.regex, self.match, self.output,
                        self.compression, self.level, self.overwrite, self.verify, self.reproducible,
                        self.delete_sources):
            control.observe(lambda _: self._drop_pending(), "value")

        self._set_levels(level)
        self._show_mode()
        if workers is not None:
            self._set_workers(workers)
        self._say_scan([self._safe_scan(self.source, self.extensions, _as_list(extensions)),
                        self._safe_scan(self.markers, self.marker_extensions, _as_list(stem_extensions))])
        if config is not None:
            self.config_path.value = str(config)
            self._guard(self.load_yaml)

    # -- display -----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)  # short and stable: saved notebooks compare it
        return data

    def __repr__(self) -> str:
        return f"ZipForm(root={str(self.root) if self.root else None!r})"

    def display(self) -> None:
        """Show the form in the notebook (the same as leaving ``form`` last in a cell)."""
        from IPython.display import display

        display(self)

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _tag(widget: w.DOMWidget, name: str) -> Any:
        widget.add_class(f"zipkit-{name}")
        return widget

    def _say(self, text: str, kind: str = "info") -> None:
        """Put ``text`` on the status line (``kind``: info, ok, error, busy)."""
        self.message = text
        color = {"error": "#b00020", "ok": "#1b5e20", "busy": "#0d47a1"}.get(kind, "inherit")
        self.status.value = (f"<span class='zipkit-status-{kind}' style='color:{color}'>"
                             f"{_esc(text)}</span>")

    def _guard(self, action) -> None:
        """Run a button's action; show what went wrong on the status line instead of raising."""
        try:
            action()
        except ZipkitError as e:
            self._say(f"error: {e}", "error")
        except Exception as e:  # the form must not die on an unexpected error; say it, log it
            log.exception("zipkit form: %s failed", getattr(action, "__name__", "action"))
            self._say(f"error: {type(e).__name__}: {e}", "error")

    def _path(self, text: str, what: str) -> Path:
        """The folder or file named in a field, made absolute; refused when outside ``root``."""
        raw = text.strip()
        if not raw:
            raise UsageError(f"{what}: give a path")
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = (self.root if self.root is not None else Path.cwd()) / p
        p = p.resolve()
        if self.root is not None and not p.is_relative_to(self.root):
            raise UsageError(f"{what} {p} is outside the folder this form may use ({self.root}); refused")
        return p

    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- scanning ----------------------------------------------------------------------------
    def scan(self) -> None:
        """Look at the source (and marker) folder again and offer the extensions found there."""
        errors = [self._safe_scan(self.source, self.extensions)]
        if self.stem_mode.value == _MARKERS:
            errors.append(self._safe_scan(self.markers, self.marker_extensions))
        self._say_scan(errors)

    def _scan_markers(self) -> None:
        self._say_scan([self._safe_scan(self.markers, self.marker_extensions)])

    def _say_scan(self, errors: list[str | None]) -> None:
        found = [e for e in errors if e]
        if found:
            self._say("error: " + "; ".join(found), "error")
        elif self.message.startswith("error:"):
            self._say("")

    def _safe_scan(self, field: w.Text, choice: w.SelectMultiple, wanted: Iterable[str] = ()) -> str | None:
        """Offer the extensions found in ``field``'s folder in ``choice``; return what went wrong."""
        keep = [e.lstrip(".").lower() for e in wanted] or list(choice.value)
        found: list[tuple[str, int, int]] = []
        error = None
        if field.value.strip():
            try:
                found = scan_extensions(self._path(field.value, field.description))
            except ZipkitError as e:
                error = str(e)
            except OSError as e:
                error = f"cannot list {field.value.strip()}: {e.strerror or e}"
        seen = {ext for ext, _, _ in found}
        opts = [(f"{ext} — {n} file{'s' if n != 1 else ''}, {format_bytes(size)}", ext)
                for ext, n, size in found]
        opts += [(f"{ext} — no files here", ext) for ext in keep if ext not in seen]
        choice.options = opts
        choice.value = tuple(e for e in keep if e in {v for _, v in opts})
        return error

    def _show_mode(self) -> None:
        markers = self.stem_mode.value == _MARKERS
        self.markers_box.layout.display = "" if markers else "none"
        if markers:
            self._scan_markers()

    def _set_levels(self, level: int | None = None) -> None:
        current = self.level.value if level is None else level
        allowed = _levels(self.compression.value)
        self.level.options = [("default", _DEFAULT_LEVEL)] + [(str(i), i) for i in allowed]
        self.level.value = current if current in allowed else _DEFAULT_LEVEL

    def _set_workers(self, workers: int | str) -> None:
        workers = opt.WORKERS(workers, "workers") or "auto"
        self.workers.value = self.workers.max if workers == "auto" else min(int(workers), self.workers.max)

    # -- settings ----------------------------------------------------------------------------
    def plan_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`zipkit.plan` that the form's controls give.

        Raises
        ------
        zipkit.UsageError
            A folder is missing or outside ``root``, or no extension is picked.
        """
        if not self.extensions.value:
            raise UsageError("pick at least one extension to archive")
        kw: dict[str, Any] = {
            "source": self._path(self.source.value, "source folder"),
            "extensions": list(self.extensions.value),
            "output": self._path(self.output.value, "output folder") if self.output.value.strip() else None,
            "overwrite": self.overwrite.value,
            "compression": self.compression.value,
            "level": None if self.level.value == _DEFAULT_LEVEL else self.level.value,
            "verify": self.verify.value,
            "delete_sources": self.delete_sources.value,
            "reproducible": self.reproducible.value,
        }
        if self.stem_mode.value == _MARKERS:
            if not self.marker_extensions.value:
                raise UsageError("pick at least one marker extension (e.g. yml)")
            kw.update(
                stems_from=self._path(self.markers.value, "marker folder"),
                stem_extensions=list(self.marker_extensions.value),
                match=self.match.value,
                contains=_words(self.contains.value) or None,
                not_contains=_words(self.not_contains.value) or None,
                pattern=self.pattern.value.strip() or None,
                regex=self.regex.value.strip() or None,
            )
        for key, value in self._extra_plan.items():
            kw.setdefault(key, value)
        return kw

    def run_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`zipkit.run_plan` that the form gives (not progress or cancel)."""
        n = self.workers.value
        kw: dict[str, Any] = {"workers": "auto" if n >= self.workers.max else n,
                              "save_error_reports": True}
        for key, value in self._extra_run.items():
            kw.setdefault(key, value)
        return kw

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
        run_kw = self.run_kwargs()
        self._cancel = threading.Event()
        self.report = None
        self.result.value = ""
        self.progress.value, self.progress.max, self.progress.bar_style = 0.0, 1.0, ""
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
            self._say(f"zipping {len(p.to_write)} stem(s), {format_bytes(p.total_bytes)} …", "busy")
            report = run_plan(p, progress=self._on_progress, cancel=cancel, **run_kw)
        except ZipkitError as e:
            self._say(f"error: {e}", "error")
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
        now = time.monotonic()
        if ev.result is None and now - self._last_draw < _UI_INTERVAL:
            return
        self._last_draw = now
        self.progress.max = max(1, ev.bytes_total)
        self.progress.value = min(ev.bytes_done, ev.bytes_total)
        pct = f" ({ev.bytes_done / ev.bytes_total:.0%})" if ev.bytes_total else ""
        failed = f", {ev.failed} failed" if ev.failed else ""
        cancelling = " — cancelling …" if self._cancel is not None and self._cancel.is_set() else ""
        self._say(f"zipping: {ev.stems_done}/{ev.stems_total} stems, {format_bytes(ev.bytes_done)} of "
                  f"{format_bytes(ev.bytes_total)}{pct}{failed}{cancelling}", "busy")

    def _show_report(self, report: Report) -> None:
        self.report = report
        parts = [report._repr_html_()]
        if report.error_report is not None:
            parts.append(f"<p class='zipkit-error-report'>error report: "
                         f"<code>{_esc(report.error_report)}</code></p>")
        self.result.value = "".join(parts)
        if report.cancelled:
            self.progress.bar_style = "warning"
            self._say(f"cancelled: {report.summary_line()}", "error")
        elif report.failed:
            self.progress.bar_style = "danger"
            self._say(f"done with failures: {report.summary_line()}", "error")
        else:
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            self._say(f"done: {report.summary_line()}", "ok")

    def _set_running(self, running: bool) -> None:
        for b in (self.preview_button, self.zip_button, self.load_button, self.scan_button):
            b.disabled = running
        self.cancel_button.disabled = not running

    def cancel(self) -> None:
        """Stop the run: no new stems start, workers stop, temp files go; the report says what ran."""
        if self._busy() and self._cancel is not None:
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
        from ._config import settings_to_yaml

        target = self._path(str(path) if path is not None else self.config_path.value, "config file")
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
        from ._config import load_config

        source = self._path(str(path) if path is not None else self.config_path.value, "config file")
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
        kw = dict(plan_kwargs)
        run = dict(run_kwargs or {})
        # Check everything before touching a control: a bad setting leaves the form as it was.
        plan_defaults = {k: v.default for k, v in inspect.signature(plan).parameters.items()}
        run_names = set(inspect.signature(run_plan).parameters) - {"plan"}
        unknown = sorted(set(kw) - set(plan_defaults)) + sorted(set(run) - run_names)
        if unknown:
            raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
        match = kw.pop("match", None) or "prefix"
        overwrite = kw.pop("overwrite", None) or "always"
        compression = kw.pop("compression", None) or "deflate"
        opt.choice(match, MATCH_MODES, "match")
        opt.choice(overwrite, OVERWRITE_POLICIES, "overwrite")
        opt.choice(compression, COMPRESSIONS, "compression")
        workers = opt.WORKERS(run.pop("workers", None), "workers") or "auto"
        opt.compression_level(kw.get("level"), compression)
        opt.SECONDS(kw.get("timeout"), "timeout")  # kept for the run: refused now, not at Zip
        opt.kib_range(kw.get("min_size_kb"), kw.get("max_size_kb"))
        opt.REGEX(kw.get("regex"), "regex")
        notes: list[str] = []
        self._drop_pending()

        def take(key: str, default: Any = None) -> Any:
            return kw.pop(key, default)

        source, exts = take("source"), _as_list(take("extensions"))
        output, stems_from = take("output"), take("stems_from")
        stem_exts = _as_list(take("stem_extensions"))
        self.stem_mode.value = _MARKERS if stems_from is not None else _OWN
        self.markers.value = "" if stems_from is None else str(stems_from)
        errors = [self._safe_scan(self.markers, self.marker_extensions, stem_exts)]
        self.contains.value = ", ".join(_as_list(take("contains")))
        self.not_contains.value = ", ".join(_as_list(take("not_contains")))
        self.pattern.value = take("pattern") or ""
        self.regex.value = take("regex") or ""
        self.match.value = match
        self.source.value = "" if source is None else str(source)
        errors.append(self._safe_scan(self.source, self.extensions, exts))
        self._say_scan(errors)
        self.output.value = "" if output is None else str(output)
        self.overwrite.value = overwrite
        self.compression.value = compression
        level = take("level")
        self._set_levels(_DEFAULT_LEVEL if level is None else level)
        self.verify.value = bool(take("verify", False))
        self.reproducible.value = bool(take("reproducible", False))
        self.delete_sources.value = bool(take("delete_sources", False))
        self._extra_plan = {k: v for k, v in kw.items() if v != plan_defaults[k]}
        self._set_workers(workers)
        for key in ("progress", "cancel", "save_error_reports"):  # the form sets these itself
            run.pop(key, None)
        self._extra_run = {k: v for k, v in run.items() if v is not None}
        self.plan = None
        return notes


def _levels(compression: str) -> range:
    """The levels the level dropdown offers for ``compression``: zipkit._options.LEVELS."""
    low, top = opt.LEVELS[compression]
    return range(low, top + 1)


def _as_list(value: str | os.PathLike[str] | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]
