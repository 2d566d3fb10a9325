"""The plain-data containers one pickle parse (`unpickle`) builds, and the checks that keep them plain and bounded.

Lists, dicts and sets may be filled only if this parse made them (`own`); dict keys and set elements must be hashable
plain data (`is_key`: scalars, numpy scalars of plain dtypes, and tuples/frozensets of those); markers
(`pickle_values.Marker`) never become values. Tuples and frozensets record their depth when made, so hashing or
comparing a key cannot recurse deeply; the finished result is walked once more without recursion
(`check_result`), because lists, dicts and sets can grow after they were put into others. Entries of dicts and sets
are counted (colliding hashes make insertion quadratic), and every container's memory is charged before it is
kept.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

import numpy as np

from continual_diffusers.data.pickle_values import (
    CONTAINER_TYPES,
    SCALAR_TYPES,
    VALUE_TYPES,
    Checks,
    Marker,
    describe,
)
from continual_diffusers.data.pickled_numpy import PLAIN_KINDS, PendingArray

_CONTAINER_COST = 200  # bytes of bookkeeping per container (stack slot, depth table entry, ...) on top of its size


class PlainContainers:
    """The containers of one parse.

    Args:
        checks: the parse's memory budget and errors (the machine, which names the opcode in each message).
        max_depth: deepest container nesting accepted.
        max_keys_per_container: most entries of one dict or set.
        max_keys: most entries of all dicts and sets together.
    """

    def __init__(self, checks: Checks, max_depth: int, max_keys_per_container: int, max_keys: int):
        self.checks = checks
        self.max_depth, self.max_keys_per_container, self.max_keys = max_depth, max_keys_per_container, max_keys
        self.keys_left = max_keys
        # Containers built here (ids): the lists, dicts and sets this parser may fill; the depth of each tuple and
        # frozenset, which of them can be keys, which tuples hold markers. `keep` holds every container so that no
        # id is reused while these tables refer to it.
        self.owned: set[int] = set()
        self.depth: dict[int, int] = {}
        self.hashable: set[int] = set()
        self.marked: set[int] = set()
        self.keep: list = []

    def value(self, item: Any) -> Any:
        """`item` as a value that may go into a container or the result: finished arrays resolve, markers refuse."""
        if type(item) in SCALAR_TYPES:
            return item
        if isinstance(item, PendingArray) and item.array is not None:
            return item.array
        if isinstance(item, Marker) or (type(item) is tuple and id(item) in self.marked):
            self.checks.refuse(f"{describe(item)} is not plain data and cannot be used as a value")
        return item

    def is_key(self, item: Any) -> bool:
        """Hashable plain data: scalars, numpy scalars, and tuples/frozensets of those (their depth is bounded)."""
        if type(item) in SCALAR_TYPES or (isinstance(item, np.generic) and item.dtype.kind in PLAIN_KINDS):
            return True
        return type(item) in (tuple, frozenset) and id(item) in self.hashable

    def key(self, item: Any) -> Any:
        item = self.value(item)
        if not self.is_key(item):
            self.checks.refuse(f"{describe(item)} cannot be a dict key or set element (only hashable plain data can)")
        return item

    def register(self, container: Any, children: Iterable = ()) -> Any:
        """Record a new container. Tuples and frozensets (immutable, so this is final) also get their depth (1 +
        deepest child: bounded here so that hashing or comparing keys cannot recurse deeply), whether they are
        keys (hashable plain data) and whether they hold markers (then they are arguments, never values)."""
        self.checks.spend(sys.getsizeof(container) + _CONTAINER_COST)
        self.keep.append(container)
        if type(container) not in (tuple, frozenset):
            self.owned.add(id(container))
            return container
        depth, key, marked = 0, True, False
        for child in children:
            depth = max(depth, self.depth.get(id(child), 0))
            key = key and self.is_key(child)
            marked = marked or isinstance(child, Marker) or id(child) in self.marked
        if depth + 1 > self.max_depth:
            self.too_deep()
        self.depth[id(container)] = depth + 1
        if key and not marked:
            self.hashable.add(id(container))
        if marked:
            self.marked.add(id(container))
        return container

    def too_deep(self) -> NoReturn:
        self.checks.exceeded(f"containers nested deeper than {self.max_depth} levels", "; task data nests 3 levels")

    def count_keys(self, size: int, added: int) -> None:
        self.keys_left -= added
        if size + added > self.max_keys_per_container or self.keys_left < 0:
            self.checks.exceeded(
                f"more than {self.max_keys_per_container} entries in one dict or set, or {self.max_keys} in all"
            )

    def own(self, target: Any, kinds: tuple, what: str) -> Any:
        """`target` if it is a container of one of `kinds` that this parser built; refused otherwise."""
        if type(target) not in kinds or id(target) not in self.owned:
            self.checks.refuse(f"{what} only the parser's own {kinds[0].__name__}s, not {describe(target)}")
        return target

    def new_tuple(self, items: list) -> tuple:
        finished = [x.array if isinstance(x, PendingArray) and x.array is not None else x for x in items]
        return self.register(tuple(finished), finished)

    def append(self, target: Any, items: list) -> None:
        target = self.own(target, (list,), "APPEND/APPENDS/LIST fill")
        self.checks.spend(8 * len(items))
        target.extend([self.value(item) for item in items])

    def setitems(self, target: Any, items: list) -> None:
        target = self.own(target, (dict, collections.OrderedDict), "SETITEM/SETITEMS/DICT fill")
        if len(items) % 2:
            self.checks.malformed("SETITEMS with an odd number of items")
        self.count_keys(len(target), len(items) // 2)
        self.checks.spend(100 * len(items))
        for key, value in zip(items[::2], items[1::2], strict=True):
            target[self.key(key)] = self.value(value)

    def additems(self, target: Any, items: list) -> None:
        target = self.own(target, (set,), "ADDITEMS fills")
        self.count_keys(len(target), len(items))
        self.checks.spend(100 * len(items))
        target.update([self.key(item) for item in items])

    def new_set(self, kind: type, items: Iterable) -> set | frozenset:
        items = [self.key(item) for item in items]
        self.count_keys(0, len(items))
        self.checks.spend(100 * len(items))
        return self.register(kind(items), items)

    def check_result(self, result: Any) -> None:
        """Walk the result without recursion: plain types only, no reference cycles, nesting within max_depth.

        Lists, dicts and sets can grow after they were put into others (memo references), so only this walk
        knows their depth."""
        depth_of: dict[int, int] = {}
        on_path: set[int] = set()
        todo: list[tuple[Any, bool]] = [(result, False)]
        while todo:
            item, finished = todo.pop()
            if type(item) not in CONTAINER_TYPES:
                if type(item) not in VALUE_TYPES and not isinstance(item, np.generic):
                    self.checks.refuse(f"the result holds {describe(item)}")
                continue
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            if finished:
                on_path.discard(id(item))
                depth_of[id(item)] = 1 + max((depth_of.get(id(child), 0) for child in children), default=0)
                if depth_of[id(item)] > self.max_depth:
                    self.too_deep()
            elif id(item) in on_path:
                self.checks.refuse("the pickle holds a reference cycle, which plain task data never has")
            elif id(item) not in depth_of:
                on_path.add(id(item))
                todo.append((item, True))
                types = {type(child) for child in children}
                walk = (types & CONTAINER_TYPES) | (types - VALUE_TYPES)  # containers, and numpy scalars to check
                if walk:
                    todo.extend((child, False) for child in children if type(child) in walk)
