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
