"""zipkit: zip files by stem, in parallel, with honest progress, and never lose a byte.

>>> from zipkit import zip_by_extension
>>> report = zip_by_extension("output/csv", ["csv"], "output/zip",
...                           stems_from="models", stem_extensions=["yml"])  # doctest: +SKIP
"""

from ._errors import (
    ConfigError,
    ExistingArchiveError,
    NothingToDo,
    RunInterrupted,
    SourceChangedError,
    SourceError,
    StemError,
    StemTimeout,
    UnsafeStemError,
    UsageError,
    VerifyError,
    WorkerLost,
    ZipkitError,
)
from ._plan import ArchiveOptions, Plan, SourceFile, StemPlan, plan
from ._report import Report, StemResult
from ._run import ProgressEvent, run_plan, zip_by_extension

__version__ = "0.1.0"

__all__ = [
    "ArchiveOptions",
    "ConfigError",
    "ExistingArchiveError",
    "NothingToDo",
    "Plan",
    "ProgressEvent",
    "Report",
    "RunInterrupted",
    "SourceChangedError",
    "SourceError",
    "SourceFile",
    "StemError",
    "StemPlan",
    "StemResult",
    "StemTimeout",
    "UnsafeStemError",
    "UsageError",
    "VerifyError",
    "WorkerLost",
    "ZipkitError",
    "__version__",
    "plan",
    "run_config",
    "run_plan",
    "zip_by_extension",
]


def __getattr__(name: str) -> object:
    # run_config pulls in YAML: load it on first use so that `import zipkit` stays fast.
    if name == "run_config":
        from ._config import run_config

        return run_config
    raise AttributeError(f"module 'zipkit' has no attribute {name!r}")
