"""Thread helpers shared by the comparison, the pull and the tag resolution.

A run's tasks do their registry and ECR calls from a ThreadPoolExecutor (``defaults.concurrency``
threads); these helpers keep failures per item and share the threads fairly between images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from itertools import zip_longest
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


def fair_map(pool: Executor, fn: Callable[[T], R], items: Sequence[T], image: Callable[[T], int]) -> list[R]:
    """``pool.map`` taking the items round-robin by ``image`` (an image index); results in input order.

    An image with a lower ``concurrency`` makes threads wait for its slots; taking the images in
    turn keeps those waiting threads few, so the other images of the batch are not starved.
    """
    order = fair_order(items, image)
    results = dict(zip(order, pool.map(lambda p: fn(items[p]), order), strict=True))
    return [results[p] for p in range(len(items))]


def fair_order(items: Sequence[T], image: Callable[[T], int]) -> list[int]:
    """The positions of ``items`` taken round-robin by ``image`` (see fair_map)."""
    turns: dict[int, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        turns[image(item)].append(position)
    return [p for turn in zip_longest(*turns.values()) for p in turn if p is not None]


def settled_map(pool: Executor, fn: Callable[[K], R], keys: Iterable[K]) -> dict[K, R | Exception]:
    """``fn`` of each key, in parallel; a key whose call raised maps to the exception instead."""

    def settled(key: K) -> R | Exception:
        try:
            return fn(key)
        except Exception as exc:  # kept for the caller to report on this key
            return exc

    names = list(keys)
    return dict(zip(names, pool.map(settled, names), strict=True))


def map_values(fn: Callable[[T], R], items: Mapping[str, T], concurrency: int) -> dict[str, R]:
    """``fn`` of each value, at most ``concurrency`` at a time in threads of their own, by key."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        return dict(zip(items, pool.map(fn, items.values()), strict=True))
