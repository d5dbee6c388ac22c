"""One way to build the main window in tests (as napari's ``make_napari_viewer``).

``make_window(store=None, size=(1200, 800))`` builds a real ``MainWindow``, shows it
offscreen, waits until it is exposed, and closes it (and any store it was given) after
the test, so no test module keeps its own copy of this set-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rcm_viewer.cases import CaseStore
from rcm_viewer.ui.main_window import MainWindow


@pytest.fixture
def make_window(qtbot) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(store: CaseStore | None = None, size: tuple[int, int] = (1200, 800)) -> MainWindow:
        window = MainWindow(store=store)
        qtbot.addWidget(window)
        window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.close()
