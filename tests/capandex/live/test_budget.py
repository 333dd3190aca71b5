"""An exchange key's request budget paces concurrent workers: booked in Postgres, it never lets more
through than its burst plus its rate, however the workers' transactions interleave."""

from __future__ import annotations

import threading
import time
import uuid

from capandex.exchanges.limits import KeyLimit
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
