"""A form for zipkit in Jupyter and Voilà: pick folders and options, preview the plan, zip, cancel.

``ZipForm`` needs ipywidgets (``pip install zipkit[notebook]``); ``import zipkit`` alone does
not import it, and neither does :mod:`zipkit.widgets._settings` (the mapping between the form's
values and the library's options, tested without a kernel).

>>> from zipkit.widgets import ZipForm
>>> form = ZipForm(source="output/csv", extensions=["csv"], output="output/zip")  # doctest: +SKIP
>>> form                                                                           # doctest: +SKIP

The package has three parts: ``_layout`` (the controls and their arrangement), ``_settings``
(form values ↔ :func:`zipkit.plan` / :func:`zipkit.run_plan` arguments; no ipywidgets) and
``_form`` (the controller: buttons, the background run, progress, Cancel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._settings import scan_extensions

if TYPE_CHECKING:
    from ._form import ZipForm

__all__ = ["ZipForm", "scan_extensions"]


def __getattr__(name: str) -> Any:
    """``ZipForm`` is imported on first use, so that ``_settings`` never pulls in ipywidgets."""
    if name == "ZipForm":
        from ._form import ZipForm

        return ZipForm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
