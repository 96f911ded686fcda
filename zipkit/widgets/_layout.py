"""The form's controls and their arrangement: every widget, its label, its CSS class, and how
each is filled (extensions scanned, marks on fields at fault, level choices, folder pickers).

The controller (``_form``) decides when; the mapping of the values to the library's options is
in ``_settings``; the HTML shown during and after a run in ``_render``.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import ipywidgets as w  # type: ignore[import-untyped, unused-ignore]  # ipywidgets ships no type hints

from .._errors import ZipkitError
from .._options import COMPRESSIONS, OVERWRITE_POLICIES, WORKERS
from .._table import format_bytes
from ._settings import DEFAULT_LEVEL as _DEFAULT_LEVEL
from ._settings import MARKERS as _MARKERS
from ._settings import OWN as _OWN
from ._settings import FormValues, browse, folder, levels, scan_extensions
from ._settings import as_list as _as_list

__all__ = ["FormLayout"]


def _esc(text: object) -> str:
    return html.escape(str(text))


class FormLayout:
    """The widgets of :class:`~zipkit.widgets.ZipForm`, built by :meth:`_build`, and the ways to
    fill and read them (scans, marks, levels, pickers, the status line); the controller decides
    when."""

    CSS_CLASSES: tuple[str, ...] = (
        "zipkit-form", "zipkit-root", "zipkit-source", "zipkit-scan", "zipkit-extensions",
        "zipkit-stem-mode", "zipkit-markers-box", "zipkit-markers", "zipkit-marker-extensions",
        "zipkit-contains", "zipkit-not-contains", "zipkit-pattern", "zipkit-regex", "zipkit-match",
        "zipkit-output", "zipkit-compression", "zipkit-level", "zipkit-workers", "zipkit-overwrite",
        "zipkit-verify", "zipkit-reproducible", "zipkit-delete-sources", "zipkit-confirm",
        "zipkit-confirm-text", "zipkit-confirm-delete", "zipkit-keep-sources", "zipkit-preview",
        "zipkit-zip", "zipkit-cancel", "zipkit-config-path", "zipkit-save-yaml", "zipkit-load-yaml",
        "zipkit-progress", "zipkit-status", "zipkit-result",
        # added with the task layout (issue 16); the names above are kept as they were
        "zipkit-actions", "zipkit-filters", "zipkit-options", "zipkit-yaml", "zipkit-progress-text",
        "zipkit-stems", "zipkit-downloads", "zipkit-style", "zipkit-source-browse", "zipkit-markers-browse",
        "zipkit-output-browse",
        *(f"zipkit-{name}-error" for name in ("source", "extensions", "markers", "marker-extensions",
                                               "output", "regex", "level", "config-path")),
    )

    #: The fields that can be marked invalid: FormValues field → CSS name of the control.
    FIELDS: dict[str, str] = {
        "source": "source", "extensions": "extensions", "markers": "markers",
        "marker_extensions": "marker-extensions", "output": "output", "regex": "regex", "level": "level",
        "config_path": "config-path",
    }

    root: Any
    cpus: int
    message: str
    _quiet: int

    @staticmethod
    def _tag(widget: w.DOMWidget, name: str) -> Any:
        widget.add_class(f"zipkit-{name}")
        return widget

    def _build(
        self,
        source: str | os.PathLike[str] | None,
        output: str | os.PathLike[str] | None,
        stems_from: str | os.PathLike[str] | None,
        contains: str | Sequence[str] | None,
        not_contains: str | Sequence[str] | None,
        pattern: str | None,
        regex: str | None,
        match: str,
        compression: str,
        overwrite: str,
        verify: bool,
        reproducible: bool,
    ) -> None:
        """Make every control (initial values as given) and :attr:`widget`, the whole form.

        Laid out for the task: the inputs that matter on the left (folders, extensions, stems),
        the actions, status and progress beside them at the top, marker filters and archive
        options folded away, the result below.
        """
        wide = w.Layout(width="40em")
        style = {"description_width": "10em"}

        def text(name: str, description: str, placeholder: str = "", value: object = None) -> w.Text:
            t = w.Text(value="" if value is None else str(value), description=description,
                       placeholder=placeholder, continuous_update=False, layout=wide, style=style)
            return self._tag(t, name)

        def error(name: str) -> w.HTML:
            e = self._tag(w.HTML(layout=w.Layout(display="none", margin="0 0 4px 10.5em", max_width="30em")),
                          f"{name}-error")
            e.add_class("zipkit-field-error")
            return e

        self.field_errors: dict[str, w.HTML] = {f: error(css) for f, css in self.FIELDS.items()}

        def field(control: w.Widget, name: str, *beside: w.Widget) -> w.VBox:
            row = w.HBox([control, *beside]) if beside else control
            return w.VBox([row, self.field_errors[name]])

        def picker(name: str) -> w.Dropdown:
            """A folder picker confined to the root: sub-folders and "..", filled by the form."""
            return self._tag(w.Dropdown(options=[("browse…", "")], value="", tooltip="pick a folder",
                                        layout=w.Layout(width="9em")), f"{name}-browse")

        self.pickers: dict[str, w.Dropdown] = {n: picker(n) for n in ("source", "markers", "output")}

        # -- folders and stems ---------------------------------------------------------------
        start = source if source is not None else (self.root if self.root is not None else None)
        self.root_label = self._tag(w.HTML(
            f"files are read and written only inside <code>{_esc(self.root)}</code>" if self.root else ""),
            "root")
        self.source = text("source", "source folder", "folder of the files to zip", start)
        self.scan_button = self._tag(w.Button(description="Rescan", tooltip="look at the folder again",
                                              layout=w.Layout(width="auto")), "scan")
        self.extensions = self._tag(w.SelectMultiple(options=[], description="extensions", rows=4,
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
        self.filters = self._tag(w.Accordion(children=[w.VBox([
            self.contains, self.not_contains, self.pattern, field(self.regex, "regex"), self.match])],
            titles=("marker filters: contains, lacks, pattern, regex, match",), selected_index=None,
            layout=w.Layout(width="44em")), "filters")
        self.markers_box = self._tag(w.VBox([field(self.markers, "markers", self.pickers["markers"]),
                                             field(self.marker_extensions, "marker_extensions"),
                                             self.filters]), "markers-box")
        self.output = text("output", "output folder", "empty: the source folder", output)

        # -- archive options -----------------------------------------------------------------
        self.compression = self._tag(w.Dropdown(options=list(COMPRESSIONS), value=compression,
                                                description="compression", style=style), "compression")
        self.level = self._tag(w.Dropdown(options=[("default", _DEFAULT_LEVEL)], value=_DEFAULT_LEVEL,
                                          description="level", style={"description_width": "4em"},
                                          layout=w.Layout(width="12em")), "level")
        self.workers = self._tag(w.IntSlider(value=self.cpus, min=1, max=self.cpus, description="workers",
                                             tooltip=f"1 … {self.cpus}; all CPUs is saved as 'auto'",
                                             style=style), "workers")
        labels = {"always": "always: merge into existing archives (as zip)",
                  "update": "update: merge only into out-of-date archives",
                  "never": "never: skip existing archives",
                  "replace": "replace: rebuild, dropping other members"}
        self.overwrite = self._tag(w.Dropdown(
            options=[(labels.get(p, p), p) for p in OVERWRITE_POLICIES], value=overwrite,
            description="existing archives", style=style, layout=w.Layout(width="40em")), "overwrite")
        self.verify = self._tag(w.Checkbox(value=verify, description="verify every archive (CRCs)",
                                           indent=False, layout=w.Layout(width="auto")), "verify")
        self.reproducible = self._tag(w.Checkbox(value=reproducible, indent=False,
                                                 description="reproducible (fixed timestamps)",
                                                 layout=w.Layout(width="auto")), "reproducible")
        self.delete_sources = self._tag(w.Checkbox(value=False, indent=False,
                                                   description="delete sources after archiving (asks first)",
                                                   layout=w.Layout(width="auto")), "delete-sources")
        self.config_path = text("config-path", "YAML config", "e.g. zip_job.yml")
        self.config_path.layout = w.Layout(width="26em")
        self.config_path.style = {"description_width": "7.5em"}
        self.save_button = self._tag(w.Button(description="Save as YAML", icon="save",
                                              layout=w.Layout(width="auto")), "save-yaml")
        self.load_button = self._tag(w.Button(description="Load YAML", icon="folder-open",
                                              layout=w.Layout(width="auto")), "load-yaml")
        self.options = self._tag(w.Accordion(children=[
            w.VBox([w.HBox([self.compression, self.level]), self.workers, self.overwrite,
                    self.field_errors["level"],
                    w.HBox([self.verify, self.reproducible]), self.delete_sources]),
        ], titles=("archive options: compression, workers, existing archives, delete sources",),
            selected_index=None, layout=w.Layout(width="44em")), "options")
        self.field_errors["config_path"].layout.margin = "0 0 4px 8em"
        self.yaml = self._tag(w.Accordion(children=[w.VBox([
            self.config_path, self.field_errors["config_path"],
            w.HBox([self.save_button, self.load_button], layout=w.Layout(margin="0 0 0 8em"))])],
            titles=("settings as YAML: save, load",), selected_index=None,
            layout=w.Layout(width="95%", margin="8px 0 0 0")), "yaml")

        # -- actions, progress, result -------------------------------------------------------
        self.preview_button = self._tag(w.Button(description="Preview", icon="eye",
                                                 tooltip="show what would be written"), "preview")
        self.zip_button = self._tag(w.Button(description="Zip", icon="file-archive-o",
                                             button_style="primary"), "zip")
        self.cancel_button = self._tag(w.Button(description="Cancel", icon="stop", disabled=True,
                                                button_style="warning"), "cancel")
        self.confirm_text = self._tag(w.HTML(), "confirm-text")
        self.confirm_delete = self._tag(w.Button(description="Zip and delete sources", button_style="danger",
                                                 icon="trash", layout=w.Layout(width="auto")),
                                        "confirm-delete")
        self.keep_sources = self._tag(w.Button(description="Keep them, do not run",
                                               layout=w.Layout(width="auto")), "keep-sources")
        self.confirm_box = self._tag(w.VBox([self.confirm_text, w.HBox([self.confirm_delete,
                                                                         self.keep_sources])],
                                            layout=w.Layout(display="none")), "confirm")
        self.progress = self._tag(w.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                                  layout=w.Layout(width="95%", display="none")),
                                  "progress")  # shown from the first run on
        self.progress_text = self._tag(w.HTML(), "progress-text")
        self.stems = self._tag(w.HTML(), "stems")
        self.status = self._tag(w.HTML(), "status")
        self.downloads = self._tag(w.HTML(), "downloads")
        self.result = self._tag(w.HTML(), "result")
        self.style = self._tag(w.HTML(f"<style>{FORM_CSS}</style>"), "style")

        self.actions = self._tag(w.VBox([
            w.HBox([self.preview_button, self.zip_button, self.cancel_button]),
            self.status, self.confirm_box, self.progress, self.progress_text, self.stems,
            self.downloads, self.yaml,
        ], layout=w.Layout(flex="1 1 22em", min_width="22em", padding="0 0 0 1em")), "actions")
        inputs = w.VBox([
            field(self.source, "source", self.pickers["source"], self.scan_button),
            field(self.extensions, "extensions"),
            self.stem_mode,
            self.markers_box,
            field(self.output, "output", self.pickers["output"]),
            self.options,
        ], layout=w.Layout(flex="0 0 auto"))
        self.widget = self._tag(w.VBox([
            self.style,
            self.root_label,
            w.HBox([inputs, self.actions], layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
            self.result,
        ]), "form")

    # -- filling and reading the controls (no behaviour: the controller decides when) ---------
    def _say(self, text: str, kind: str = "info") -> None:
        """Put ``text`` on the status line (``kind``: info, ok, error, busy)."""
        self.message = text
        color = {"error": "#b00020", "ok": "#1b5e20", "busy": "#0d47a1"}.get(kind, "inherit")
        self.status.value = (f"<span class='zipkit-status-{kind}' style='color:{color}'>"
                             f"{_esc(text)}</span>")

    def _mark(self, name: str, message: str | None) -> None:
        """Mark field ``name`` invalid with ``message`` beside it, or clear its mark (None)."""
        control, note = getattr(self, name), self.field_errors[name]
        if message:
            control.add_class("zipkit-invalid")
            note.value = f"⚠ {_esc(message)}"
            note.layout.display = ""
            if name == "regex":  # a folded field at fault is unfolded, so that its message shows
                self.filters.selected_index = 0
            elif name == "level":
                self.options.selected_index = 0
            elif name == "config_path":
                self.yaml.selected_index = 0
        elif "zipkit-invalid" in control._dom_classes:
            control.remove_class("zipkit-invalid")
            note.value = ""
            note.layout.display = "none"

    def marked(self) -> dict[str, str]:
        """The fields marked invalid now and their messages (plain text)."""
        return {name: html.unescape(self.field_errors[name].value).removeprefix("⚠ ")
                for name in self.FIELDS if "zipkit-invalid" in getattr(self, name)._dom_classes}

    def _show_errors(self, fields: dict[str, str]) -> None:
        for name in self.FIELDS:
            if name != "config_path":  # only Save/Load judge the config path
                self._mark(name, fields.get(name))

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Changes made by the form itself (new options, a level kept) are not a person's edits."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _fill_picker(self, name: str) -> None:
        """Offer the sub-folders (and "..") of the folder in field ``name``, never above root."""
        here, choices = browse(getattr(self, name).value, self.root)
        with self._quietly(), self.pickers[name].hold_sync():
            self.pickers[name].options = [("browse…", "")] + [(label, str(p)) for label, p in choices]
            self.pickers[name].value = ""

    def _set_levels(self, level: int | None = None) -> None:
        """Offer the levels of the compression chosen; keep the level when it is one of them.

        Options and value go to the browser in one message (``hold_sync``): sent apart, a quick
        second change of compression could leave the dropdown blank."""
        current = self.level.value if level is None else level
        allowed = levels(self.compression.value)
        with self._quietly(), self.level.hold_sync():
            self.level.options = [("default", _DEFAULT_LEVEL)] + [(str(i), i) for i in allowed]
            self.level.value = current if current in allowed else _DEFAULT_LEVEL

    def _set_workers(self, workers: int | str) -> None:
        workers = WORKERS(workers, "workers") or "auto"
        self.workers.value = self.workers.max if workers == "auto" else min(int(workers), self.workers.max)

    def values(self) -> FormValues:
        """What the controls hold now, as plain values."""
        return FormValues(
            source=self.source.value, extensions=tuple(self.extensions.value),
            stem_mode=self.stem_mode.value, markers=self.markers.value,
            marker_extensions=tuple(self.marker_extensions.value), contains=self.contains.value,
            not_contains=self.not_contains.value, pattern=self.pattern.value, regex=self.regex.value,
            match=self.match.value, output=self.output.value, compression=self.compression.value,
            level=self.level.value, workers=self.workers.value, max_workers=self.workers.max,
            overwrite=self.overwrite.value, verify=self.verify.value,
            reproducible=self.reproducible.value, delete_sources=self.delete_sources.value)

    def _say_scan(self, errors: list[str | None]) -> None:
        found = [e for e in errors if e]
        if found:
            self._say("error: " + "; ".join(found), "error")
        elif self.message.startswith("error:") and not self.marked():
            self._say("")

    def _safe_scan(self, name: str, wanted: Iterable[str] = ()) -> str | None:
        """Offer the extensions found in folder field ``name`` (source or markers) in its list;
        mark the field and return the message when the folder cannot be listed."""
        field = getattr(self, name)
        choice = self.extensions if name == "source" else self.marker_extensions
        keep = [e.lstrip(".").lower() for e in wanted] or list(choice.value)
        found: list[tuple[str, int, int]] = []
        error = None
        if field.value.strip():
            try:
                found = scan_extensions(folder(field.value, field.description, self.root))
            except ZipkitError as e:
                error = str(e)
            except OSError as e:
                error = f"cannot list {field.description} {field.value.strip()}: {e.strerror or e}"
        self._mark(name, error)
        seen = {ext for ext, _, _ in found}
        opts = [(f"{ext} — {n} file{'s' if n != 1 else ''}, {format_bytes(size)}", ext)
                for ext, n, size in found]
        opts += [(f"{ext} — no files here", ext) for ext in keep if ext not in seen]
        with self._quietly(), choice.hold_sync():
            choice.options = opts
            choice.value = tuple(e for e in keep if e in {v for _, v in opts})
        return error

    def _set_running(self, running: bool) -> None:
        """Lock every input and action but Cancel while a run goes; unlock after."""
        for c in (*self.inputs(), self.preview_button, self.zip_button, self.load_button,
                  self.save_button, self.scan_button):
            c.disabled = running
        self.cancel_button.disabled = not running

    def _picked(self, name: str, value: str) -> None:
        if value and not self._quiet:
            getattr(self, name).value = value  # scans, refills this picker, clears old results

    def _show_mode(self) -> None:
        markers = self.stem_mode.value == _MARKERS
        self.markers_box.layout.display = "" if markers else "none"
        if markers:
            self._say_scan([self._safe_scan("markers")])
        else:  # marks on hidden fields would be messages nobody can see or fix
            for name in ("markers", "marker_extensions", "regex"):
                self._mark(name, None)

    def inputs(self) -> list[w.Widget]:
        """Every control a person edits (locked while a run goes)."""
        return [self.source, self.extensions, self.stem_mode, self.markers, self.marker_extensions,
                self.contains, self.not_contains, self.pattern, self.regex, self.match, self.output,
                self.compression, self.level, self.workers, self.overwrite, self.verify, self.reproducible,
                self.delete_sources, self.config_path, *self.pickers.values()]


#: The form's own style: marked fields, messages beside them, the live per-stem status.
FORM_CSS = (
    ".zipkit-form .zipkit-invalid input,.zipkit-form .zipkit-invalid select,"
    ".zipkit-form .zipkit-invalid textarea{border:2px solid #b00020!important;background:#fff6f6}"
    ".zipkit-form .zipkit-invalid label{color:#b00020}"
    ".zipkit-form .zipkit-field-error{color:#b00020;font-size:12px}"
    ".zipkit-form .zipkit-field-error .widget-html-content,.zipkit-form .zipkit-status .widget-html-content,"
    ".zipkit-form .zipkit-progress-text .widget-html-content{line-height:1.4;padding:2px 0}"
    ".zipkit-form .zipkit-status{font-weight:600;min-height:1.4em}"
    ".zipkit-form .zipkit-progress-text{font-size:12px;color:#424242;font-variant-numeric:tabular-nums}"
    ".zipkit-form .zipkit-stems{max-height:9em;overflow-y:auto}"
    ".zipkit-stem{display:inline-block;padding:0 .45em;margin:1px 2px;border-radius:3px;font-size:11px;"
    "line-height:1.6;font-family:ui-monospace,Menlo,Consolas,monospace}"
    ".zipkit-stem-queued{background:#f0f0f0;color:#616161}"
    ".zipkit-stem-zipping{background:#e3f2fd;color:#0d47a1;font-weight:600}"
    ".zipkit-stem-done{background:#e8f5e9;color:#1b5e20}"
    ".zipkit-stem-skipped{background:#f5f5f5;color:#9e9e9e}"
    ".zipkit-stem-failed,.zipkit-stem-timed_out{background:#fdecee;color:#b00020;font-weight:600}"
    ".zipkit-stem-cancelled{background:#fff8e1;color:#8d6e00}"
    ".zipkit-form .zipkit-downloads a{margin-right:.8em;color:#0d47a1;text-decoration:underline}"
)
