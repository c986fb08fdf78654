"""A bounded LRU of seed handles living in the current HSM session."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class HandleCache(Generic[K, V]):
    """Handles belong to one session generation; asking with another empties the cache (the
    old session's objects died with it and need no release)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._generation = -1
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, generation: int) -> V | None:
        self._follow(generation)
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: K, generation: int, value: V) -> list[V]:
        """Store `value`; return the values pushed out (the caller releases them)."""
        self._follow(generation)
        self._entries[key] = value
        self._entries.move_to_end(key)
        return self.shrink(self.capacity)

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def shrink(self, keep: int) -> list[V]:
        """Drop the least recently used entries until at most `keep` remain."""
        evicted: list[V] = []
        while len(self._entries) > keep:
            evicted.append(self._entries.popitem(last=False)[1])
        return evicted

    def _follow(self, generation: int) -> None:
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation
