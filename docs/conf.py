"""Sphinx configuration of zipkit's documentation site.

Build it from the repository root (every notebook and every code cell is executed; a failing
cell or any warning fails the build)::

    python -m sphinx -W -b html docs docs/_build/html

The tutorials are the notebooks in ``notebooks/`` (``docs/notebooks`` is a symlink to them, so
there is one copy). The configuration, CLI and API references are generated at build time from
the code by ``docs/_ext/zipkit_docs.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# Document (and execute the examples against) this checkout, whether or not it is installed.
# Notebook kernels are child processes: they inherit PYTHONPATH.
sys.path[:0] = [str(DOCS / "_ext"), str(ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

import zipkit  # noqa: E402

project = "zipkit"
author = "the zipkit authors"
copyright = "the zipkit authors"
release = version = zipkit.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "zipkit_docs",
]

root_doc = "index"
smartquotes = False  # keep `--ext` and 'auto' as typed: this is a command-line tool's manual
# notebooks/README.md is for the repository (how to test and re-save the notebooks), not the site.
exclude_patterns = ["_build", "_ext", "**/.ipynb_checkpoints", "notebooks/README.md", "Thumbs.db",
                    ".DS_Store"]

# --- MyST ------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# --- executing notebooks and {code-cell} pages --------------------------------------------------
# "force": every notebook and every markdown notebook page runs on every build, so the
# documentation cannot show output the code no longer produces.
nb_execution_mode = "force"
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True         # ... and the log shows its traceback
nb_execution_timeout = 300          # seconds per cell
# Nothing is excluded: the Dask notebook starts a LocalCluster and runs in about 10 s.
nb_execution_excludepatterns: list[str] = []
nb_merge_streams = True

# --- API reference (numpydoc docstrings) --------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False        # keep grouped parameters ("source, extensions, output") together
maximum_signature_line_length = 88  # one parameter per line in long signatures

# --- HTML ----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"zipkit {release}"
