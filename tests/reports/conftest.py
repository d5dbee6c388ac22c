"""The ``case`` fixture: one committed case with annotations and an AI result."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_case_helpers import make_case


@pytest.fixture
def case(tmp_path: Path):
    fixture = make_case(tmp_path / "case")
    yield fixture
    fixture.store.close()


@pytest.fixture(autouse=True)
def _one_application_for_the_session(qapp):
    """pytest-qt's QApplication, made before any report: the renderer would otherwise make a
    QGuiApplication, and the widget tests that run later in the same process could not make
    their QApplication (Qt allows one application object per process)."""
    return qapp
