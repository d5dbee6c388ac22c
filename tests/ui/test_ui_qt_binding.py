"""The Qt binding must not leak references to Python singletons.

PySide6 6.12.0 on Python 3.11 drops a reference to None on every void C++ call and one
to True on every Signal.emit; after a few thousand calls Python aborts with
"bool_dealloc"/"none_dealloc" and the reader's window disappears mid-session. This test
fails on such a binding (pyproject pins PySide6 < 6.12 on Python 3.11).
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel


class _Emitter(QObject):
    value = Signal(int)


def test_no_reference_leak_on_none_or_true(qtbot) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    emitter = _Emitter()
    received: list[int] = []
    emitter.value.connect(received.append)
    none_before = sys.getrefcount(None)
    true_before = sys.getrefcount(True)
    for i in range(3000):
        label.setText("x")
        emitter.value.emit(i)
    assert len(received) == 3000
    # a little slack for unrelated objects created meanwhile, far below 3000
    assert abs(sys.getrefcount(None) - none_before) < 100
    assert abs(sys.getrefcount(True) - true_before) < 100
