"""A small thread-safe LRU cache of decoded tiles/strips, bounded by bytes.

The viewer asks for overlapping regions all the time (pan by a few pixels, neighbouring
display tiles sharing a file tile); decoding a deflate or JPEG tile again for each costs
more than keeping a few megabytes around.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


class SegmentCache:
    """LRU of read-only numpy arrays; evicts the oldest until the byte budget holds.

    The entry just added is never evicted, even when it alone exceeds the budget: a TIFF
    stored as one huge compressed strip would otherwise be decoded again for every region.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        value.flags.writeable = False  # shared between threads and callers: nobody may edit it
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
