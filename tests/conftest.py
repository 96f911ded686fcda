"""Fixtures shared by several test modules (keep this small)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from zipkit.demo import make_demo


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo data set (8 cases: ``models/*.yml``, 4 CSV files each in ``output/csv``)."""
    return make_demo(tmp_path / "demo")


FORK_WITH_THREADS = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Python 3.12+ warns when a process with threads forks (the child may deadlock); zipkit
    promises never to, so such a fork fails the test. (A ``filterwarnings`` "error" cannot do
    this: ``os.fork()`` discards the exception, which hides the warning instead.) A test marked
    ``caller_forks`` gives zipkit a fork-context pool of its own: those forks are the caller's."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", message=FORK_WITH_THREADS, category=DeprecationWarning)
        yield
    forks = [w for w in seen
             if issubclass(w.category, DeprecationWarning) and "is multi-threaded, use of" in str(w.message)]
    for w in seen:  # the others go on to pytest's own summary
        if w not in forks:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if forks and item.get_closest_marker("caller_forks") is None:
        w = forks[0]
        pytest.fail(f"forked while other threads ran: {w.message} ({w.filename}:{w.lineno})")
