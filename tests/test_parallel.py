"""The thread helpers: images are taken in turn, failures stay per item."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ecr_mirror.parallel import fair_map, settled_map


def test_fair_map_takes_the_images_in_turn_and_answers_in_input_order():
    items = [(0, "a"), (0, "b"), (0, "c"), (1, "x"), (1, "y"), (2, "p")]
    called: list[str] = []

    def call(item: tuple[int, str]) -> str:
        called.append(item[1])
        return item[1].upper()

    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread: calls run in the order taken
        results = fair_map(pool, call, items, lambda item: item[0])

    # a large image first in the batch does not hold the threads before the others get one
    assert called == ["a", "x", "p", "b", "y", "c"]
    assert results == ["A", "B", "C", "X", "Y", "P"]


def test_settled_map_keeps_a_failure_as_that_keys_value():
    def call(name: str) -> int:
        if name == "bad":
            raise LookupError(f"no {name}")
        return len(name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = settled_map(pool, call, ["one", "bad", "three"])

    assert list(results) == ["one", "bad", "three"]
    assert (results["one"], results["three"]) == (3, 5)
    assert isinstance(results["bad"], LookupError) and str(results["bad"]) == "no bad"
