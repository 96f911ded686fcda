"""pytest settings for the notebooks, so that ``pytest --nbval notebooks/`` needs no more flags.

nbval compares the saved outputs after masking what truly varies (``nbval_sanitize.cfg``), in
a kernel of the Python running pytest (``--nbval-current-env``). Flags given on the command
line win. The form notebook is rooted in a temporary folder that is removed afterwards (nbval
kills its kernels, so the notebook cannot clean up after itself).
"""

import os
import shutil
import tempfile
from pathlib import Path

_made: list[str] = []


def pytest_configure(config):
    option = config.option
    if hasattr(option, "nbval_sanitize_with") and not option.nbval_sanitize_with \
            and not getattr(option, "sanitize_with", None):
        option.nbval_sanitize_with = str(Path(__file__).with_name("nbval_sanitize.cfg"))
    if hasattr(option, "nbval_current_env") and not getattr(option, "nbval_kernel_name", None) \
            and not getattr(option, "current_env", False):
        option.nbval_current_env = True
    if "ZIPKIT_FORM_ROOT" not in os.environ:  # kernels inherit it; read by 02_form.ipynb
        _made.append(tempfile.mkdtemp(prefix="zipkit-form-"))
        os.environ["ZIPKIT_FORM_ROOT"] = _made[-1]


def pytest_unconfigure(config):
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
        os.environ.pop("ZIPKIT_FORM_ROOT", None)
