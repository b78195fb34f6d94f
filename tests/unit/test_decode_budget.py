"""The receiver's shared budget of pixels being decoded: sessions wait their turn, nothing is lost."""

from __future__ import annotations

import threading
import time

from latentlink.receiver.decode_budget import PixelBudget


def test_a_reservation_over_what_is_free_waits_for_the_others_to_finish():
    budget = PixelBudget(100)
    order: list[str] = []
    with budget.reserve(70):
        waiter = threading.Thread(target=lambda: _hold(budget, 60, order))
        waiter.start()
        time.sleep(0.2)
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second ran"]
    assert budget.free == 100


def test_an_image_larger_than_the_whole_budget_runs_alone():
    budget = PixelBudget(100)
    with budget.reserve(10_000):
        assert budget.free == 0
    assert budget.free == 100


def _hold(budget: PixelBudget, pixels: int, order: list[str]) -> None:
    with budget.reserve(pixels):
        order.append("second ran")
