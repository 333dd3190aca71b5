"""Cost of booking one exchange request against its key's budget (capandex.live.budget), database work
included, and how a burst of workers on one key is paced.

    .venv/bin/python benchmarks/key_budget.py [--postgres] [--requests 500] [--workers 10]

1. Books ``--requests`` requests one after another on a budget large enough never to wait, so only
   the booking is timed (one short transaction with a row lock); prints ms per booking (p50/p95).
   A live tick books one per exchange request (2 to 5).
2. ``--workers`` threads book ``--requests`` requests together on a budget of 100 requests per
   second with a burst of 10: prints how long they took and the largest number sent in any 0.1 s
   (what the exchange would see; 10 + 100 × 0.1 = 20 at most).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

from harness import add_postgres_option, embedded_defaults


def main() -> None:
    parser = argparse.ArgumentParser()
    add_postgres_option(parser)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()

    with embedded_defaults(postgres=args.postgres):
        from capandex.db.session import get_engine
        from capandex.exchanges.limits import KeyLimit
        from capandex.live.budget import KeyBudget

        get_engine()
        budget = KeyBudget(uuid.uuid4(), "key_bench", KeyLimit(10**9, 1e9))
        timings = []
        for _ in range(args.requests):
            began = time.perf_counter()
            budget.acquire()
            timings.append((time.perf_counter() - began) * 1000)
        p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=20)[18]
        database = "PostgreSQL" if args.postgres else "SQLite"
        print(f"{database}: one booking p50 {p50:.2f} ms, p95 {p95:.2f} ms ({args.requests} bookings)")

        paced = KeyBudget(uuid.uuid4(), "key_paced", KeyLimit(10, 100.0))
        sent: list[float] = []
        lock = threading.Lock()

        def worker(count: int) -> None:
            for _ in range(count):
                paced.acquire()
                with lock:
                    sent.append(time.monotonic())

        began = time.monotonic()
        threads = [threading.Thread(target=worker, args=(args.requests // args.workers,)) for _ in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        sent.sort()
        densest = max(sum(1 for t in sent[i:] if t < start + 0.1) for i, start in enumerate(sent))
        print(f"{args.workers} workers, {len(sent)} requests at 100/s (burst 10): {elapsed:.2f} s, "
              f"at most {densest} in any 0.1 s")


if __name__ == "__main__":
    main()
