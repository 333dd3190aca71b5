"""The in-process background pool serves users in turn, not in arrival order."""

from __future__ import annotations

import threading
import uuid

from capandex.backtests.fairpool import FairPool


def test_a_user_who_queued_eight_does_not_make_another_wait_behind_them() -> None:
    pool = FairPool(workers=1, name="test")
    greedy, patient = uuid.uuid4(), uuid.uuid4()
    started, release, order = threading.Event(), threading.Event(), []

    def blocker() -> None:  # holds the only worker while the queue fills
        started.set()
        release.wait(5)

    first = pool.submit(greedy, blocker)
    started.wait(5)
    futures = [pool.submit(greedy, lambda i=i: order.append(("greedy", i))) for i in range(8)]
    futures.append(pool.submit(patient, lambda: order.append(("patient", 0))))
    release.set()
    for future in [first, *futures]:
        future.result(timeout=5)
    assert order[:2] == [("greedy", 0), ("patient", 0)]  # one turn each, then the rest
    assert [i for who, i in order if who == "greedy"] == list(range(8))  # a user's own jobs stay in order


def test_a_failing_job_does_not_stop_the_worker() -> None:
    pool = FairPool(workers=1, name="test")
    user = uuid.uuid4()
    failed = pool.submit(user, lambda: 1 / 0)
    done = pool.submit(user, lambda: None)
    assert done.result(timeout=5) is None
    assert isinstance(failed.exception(timeout=5), ZeroDivisionError)
