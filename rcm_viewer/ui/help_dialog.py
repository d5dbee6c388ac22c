"""F1 help (a short how-to and every shortcut) and About (versions, folders).

The shortcut table is built from the window's own actions, so it can never list a key
that does not work or miss one that does. About never imports torch: it says whether
the fast runtime or torch is installed by looking for their packages.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Iterable

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from rcm_viewer import __version__
from rcm_viewer.inference.ood import OOD_EXPLANATION
from rcm_viewer.intended_use import INTENDED_USE
from rcm_viewer.paths import user_data_dir, user_log_dir

HOW_TO = """
<h2>Reading a case</h2>
<ol>
<li><b>Open</b> a mosaic: File &gt; Open (Ctrl+O), drag a file onto the window, or
File &gt; Open demo mosaic. A case is found by the file's content, so a moved file finds
its case again.</li>
<li><b>Read</b> the whole mosaic: zoom with the wheel or <code>+</code>/<code>-</code>,
<code>1</code> for 1:1, <code>F</code> to fit; drag or use the arrow keys to pan; click
the overview to jump. Set brightness/contrast in the Display panel (<code>A</code> for
auto).</li>
<li><b>Assess</b>: answer each criterion Present / Absent / N/A (hover a criterion for its
definition), choose a diagnosis and your confidence. Every change is saved at once.</li>
<li><b>Commit</b> your initial assessment (Ctrl+Return). In reader-first mode the AI
result appears only then; later edits go to the revised assessment, and both are kept.</li>
</ol>
<p>The AI result is a demonstration unless the model card says otherwise. It never
replaces your reading of the full images.</p>
"""


def _shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    rows: dict[str, str] = {}
    for action in actions:
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
        keys = [k for k in keys if k]
        text = action.text().replace("&", "").rstrip("…").strip()
        if keys and text and text not in rows:
            rows[text] = ", ".join(keys)
    return sorted(rows.items(), key=lambda item: item[0].lower())


def help_html(actions: Iterable[QAction]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(keys)}</code></td></tr>"
        for name, keys in _shortcut_rows(actions)
    )
    extra = (
        "<tr><td>Pan</td><td><code>drag, arrow keys, space + drag</code></td></tr>"
        "<tr><td>Zoom around the cursor</td><td><code>mouse wheel / trackpad</code></td></tr>"
    )
    return (
        f"{HOW_TO}<h2>Keyboard shortcuts</h2><table cellspacing='6'>{rows}{extra}</table>"
        f"<h2>Intended use</h2><p>{html.escape(INTENDED_USE)}</p>"
        f"<p>{html.escape(OOD_EXPLANATION)}</p>"
    )


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def about_html(model_text: str) -> str:
    runtimes = []
    for name in ("openvino", "onnxruntime", "torch"):
        version = _installed(name)
        if version:
            runtimes.append(f"{name} {version}")
    lines = [
        f"<h2>rcm-viewer {html.escape(__version__)}</h2>",
        "<p>Reader-assist viewer for reflectance confocal microscopy mosaics.</p>",
        "<table cellspacing='4'>",
        f"<tr><td>Python</td><td>{html.escape(platform.python_version())}</td></tr>",
        f"<tr><td>Qt / PySide6</td><td>{qVersion()} / {pyside_version}</td></tr>",
        f"<tr><td>Classifier runtimes</td><td>{html.escape(', '.join(runtimes) or 'none')}"
        "</td></tr>",
        f"<tr><td>Model</td><td>{html.escape(model_text)}</td></tr>",
        f"<tr><td>Data folder (cases, settings)</td><td>{html.escape(str(user_data_dir()))}"
        "</td></tr>",
        f"<tr><td>Log folder</td><td>{html.escape(str(user_log_dir()))}</td></tr>",
        "</table>",
        f"<p>{html.escape(INTENDED_USE)}</p>",
    ]
    return "".join(lines)


class TextDialog(QDialog):
    """A non-modal, resizable rich-text dialog (help, about)."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.browser = QTextBrowser(self)
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(620, 560)
