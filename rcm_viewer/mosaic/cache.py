"""A small thread-safe LRU cache of decoded tiles/strips, bounded by bytes.

The viewer asks for overlapping regions all the time (pan by a few pixels, neighbouring
display tiles sharing a file tile); decoding a deflate or JPEG tile again for each costs
more than keeping a few megabytes around.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np


class SegmentCache:
    """LRU of read-only numpy arrays (or any object with its size given); evicts the oldest
    until the byte budget holds.

    The entry just added is never evicted, even when it alone exceeds the budget: a TIFF
    stored as one huge compressed strip would otherwise be decoded again for every region.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> None:
        """Add ``value``; ``nbytes`` is needed for anything but a numpy array (e.g. a QImage)."""
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # shared between threads: nobody may edit it
            size = value.nbytes
        elif nbytes is None:
            raise ValueError("nbytes is required for values that are not numpy arrays")
        else:
            size = int(nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
