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

from .._plan import COMPRESSIONS
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
    )


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
        """Make every control (initial values as given) and :attr:`widget`, the whole form."""
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
            ("always: rewrite existing archives", "always"),
            ("never: skip existing archives", "never"),
            ("update: rebuild only out-of-date archives", "update")], value=overwrite,
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
