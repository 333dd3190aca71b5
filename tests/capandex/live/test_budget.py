"""An exchange key's request budget paces concurrent workers: booked in Postgres, it never lets more
through than its burst plus its rate, however the workers' transactions interleave."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from capandex.db.schema import utcnow
from capandex.errors import RateLimited
from capandex.exchanges.limits import KeyLimit
from capandex.live import budget as budgets
from capandex.live.budget import KeyBudget


def test_ten_workers_on_one_key_are_paced_to_its_rate(configure, postgres_url):
    configure(DATABASE_URL=postgres_url)
    budget = KeyBudget(uuid.uuid4(), "key_" + uuid.uuid4().hex, KeyLimit(5, 200.0))
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            budget.acquire()
            with lock:
                sent.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - began >= (100 - 5) / 200.0 * 0.95  # 95 slots after the burst, 5 ms apart
    sent.sort()
    densest = max(sum(1 for t in sent[i:] if t < start + 0.05) for i, start in enumerate(sent))
    assert densest <= 5 + 200.0 * 0.05 + 2  # the burst, the rate, and a little scheduling jitter


def test_a_slot_the_invocation_would_not_live_to_see_is_refused_without_waiting(configure, monkeypatch):
    """Inside the tick worker's deadline a request waits for its slot only while the request and the
    tick's bookkeeping still fit after it; beyond, it fails at once as rate limited (transient)."""
    from capandex import ratelimit

    configure()
    wall, monotonic, slept = [utcnow()], [1000.0], []

    def sleep(seconds: float) -> None:  # time passes for the bucket and for the deadline alike
        slept.append(seconds)
        wall[0] += dt.timedelta(seconds=seconds)
        monotonic[0] += seconds

    monkeypatch.setattr(ratelimit, "utcnow", lambda: wall[0])
    monkeypatch.setattr(budgets, "time", SimpleNamespace(monotonic=lambda: monotonic[0]))
    monkeypatch.setattr(budgets, "sleep", sleep)
    budget = KeyBudget(uuid.uuid4(), "key_" + uuid.uuid4().hex, KeyLimit(1, 0.1))  # one slot per 10 s
    budget.acquire()  # the burst
    with budgets.until(monotonic[0] + budgets.FINISH_RESERVE_S + 5.0), pytest.raises(RateLimited):
        budget.acquire()  # its slot is 10 s away; 5 s of patience are left
    assert slept == []  # refused at once, and nothing booked
    with budgets.until(monotonic[0] + budgets.FINISH_RESERVE_S + 15.0):
        budget.acquire()  # 15 s left: the 10 s wait fits
    assert slept == [pytest.approx(10.0)]
    budget.acquire()  # no deadline: any slot up to MAX_WAIT_S away
    assert slept == [pytest.approx(10.0), pytest.approx(10.0)]
