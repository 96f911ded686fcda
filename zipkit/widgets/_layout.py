"""The form's controls and their arrangement: every widget, its label, its CSS class.

The controller (``_form``) adds behaviour; the mapping of the values to the library's options
is in ``_settings``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from .._plan import COMPRESSIONS, OVERWRITE_POLICIES
from ._settings import DEFAULT_LEVEL as _DEFAULT_LEVEL
from ._settings import MARKERS as _MARKERS
from ._settings import OWN as _OWN
from ._settings import as_list as _as_list

__all__ = ["FormLayout"]


def _esc(text: object) -> str:
    return html.escape(str(text))


class FormLayout:
    """The widgets of :class:`~zipkit.widgets.ZipForm`, built by :meth:`_build`; no behaviour."""

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
        "zipkit-actions", "zipkit-filters", "zipkit-options", "zipkit-progress-text", "zipkit-stems",
        "zipkit-downloads", "zipkit-style", "zipkit-source-browse", "zipkit-markers-browse",
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
        labels = {"always": "always: rewrite existing archives, keep their other members",
                  "never": "never: skip existing archives",
                  "update": "update: rebuild only out-of-date archives",
                  "replace": "replace: rebuild exactly from these files"}
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
        self.config_path.layout = w.Layout(width="28em")
        self.save_button = self._tag(w.Button(description="Save as YAML", icon="save",
                                              layout=w.Layout(width="auto")), "save-yaml")
        self.load_button = self._tag(w.Button(description="Load YAML", icon="folder-open",
                                              layout=w.Layout(width="auto")), "load-yaml")
        self.options = self._tag(w.Accordion(children=[
            w.VBox([w.HBox([self.compression, self.level]), self.workers, self.overwrite,
                    self.field_errors["level"],
                    w.HBox([self.verify, self.reproducible]), self.delete_sources]),
            w.VBox([field(w.HBox([self.config_path, self.save_button, self.load_button]), "config_path")]),
        ], titles=("archive options: compression, workers, existing archives, delete sources",
                   "settings as YAML: save, load"), selected_index=None,
            layout=w.Layout(width="44em")), "options")

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
            self.downloads,
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
