"""Lazy package attributes: heavy modules (torch) load on first use, not on import.

The window must show before torch is imported (docs/DESIGN.md), yet callers should
write ``from rcm_viewer.inference import classify_mosaic``. A package lists which of
its names live in heavy submodules and gets a module ``__getattr__`` from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``table[name]`` on first access
    and caches the value in the package's namespace."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
