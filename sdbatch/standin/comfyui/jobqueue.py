"""The prompt queue and the history, as the real server keeps them.

Pending prompts sit in a heap by `number` (front: a negative number), so `/queue` shows the heap
array, not execution order (OBSERVED). One worker takes the lowest number; `/queue` delete and
clear touch pending prompts only. History is in memory, in insertion order, at most 10000
entries, the oldest dropped first; `/history/{id}` is `{}` until the prompt has finished. Every
change calls `on_change` under the queue's lock (re-entrant), which the server turns into a
`status` broadcast, so the statuses go out in the order of the changes: `put`'s before the
worker's `get`'s, as the real server sends them.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from sdbatch.standin.comfyui.graph import Item

MAXIMUM_HISTORY_SIZE = 10000


class PromptQueue:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._running: dict[str, Item] = {}
        self._history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._number = 0
        self.closed = False

    def next_number(self, front: bool) -> int:
        with self._cond:
            number = self._number
            self._number += 1
        return -number if front else number

    def put(self, item: Item) -> None:
        with self._cond:
            heapq.heappush(self._heap, (item.number, next(self._seq), item))
            self._cond.notify_all()
            self._on_change()

    def get(self, timeout: float) -> Item | None:
        """The next prompt to run (now running), or None after `timeout` or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._heap or self.closed, timeout):
                return None
            if self.closed:
                return None
            item = heapq.heappop(self._heap)[2]
            self._running[item.prompt_id] = item
            self._on_change()
        return item

    def done(self, item: Item, entry: dict[str, Any]) -> None:
        with self._cond:
            self._running.pop(item.prompt_id, None)
            self._history.pop(item.prompt_id, None)
            self._history[item.prompt_id] = entry
            while len(self._history) > MAXIMUM_HISTORY_SIZE:
                self._history.popitem(last=False)
            self._on_change()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def delete(self, prompt_ids: Iterable[str]) -> None:
        doomed = set(prompt_ids)
        with self._cond:
            self._heap = [e for e in self._heap if e[2].prompt_id not in doomed]
            heapq.heapify(self._heap)
            self._on_change()

    def clear(self) -> None:
        with self._cond:
            self._heap = []
            self._on_change()

    def remaining(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._running)

    def running(self) -> list[Item]:
        with self._cond:
            return list(self._running.values())

    def snapshot(self) -> dict[str, list[Any]]:
        with self._cond:
            return {
                "queue_running": [i.as_json() for i in self._running.values()],
                "queue_pending": [e[2].as_json() for e in self._heap],
            }

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        with self._cond:
            items = list(self._history.items())
        if offset < 0:  # the route's default: the last `max_items` entries
            offset = 0 if max_items is None else max(len(items) - max_items, 0)
        chosen = items[offset:] if max_items is None else items[offset : offset + max_items]
        return dict(chosen)

    def history_of(self, prompt_id: str) -> dict[str, Any]:
        with self._cond:
            entry = self._history.get(prompt_id)
        return {} if entry is None else {prompt_id: entry}

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        with self._cond:
            for prompt_id in prompt_ids:
                self._history.pop(prompt_id, None)

    def clear_history(self) -> None:
        with self._cond:
            self._history.clear()
