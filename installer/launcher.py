"""Entry script of the frozen app: the same ``main`` as the ``rcm-viewer`` console script.

A file of its own (not ``rcm_viewer/__main__.py``) so PyInstaller sees an absolute import of
the package and ``freeze_support`` runs before anything else (worker processes on Windows
and macOS re-enter through this script).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from rcm_viewer.cli import main

    sys.exit(main())
