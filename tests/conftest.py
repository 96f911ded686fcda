"""Fixtures shared by several test modules (keep this small)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zipkit.demo import make_demo


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo data set (8 cases: ``models/*.yml``, 4 CSV files each in ``output/csv``)."""
    return make_demo(tmp_path / "demo")
