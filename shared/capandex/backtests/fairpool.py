"""In-process background backtests (``capandex serve``) served fairly between users.

A plain thread pool is one FIFO queue: a user who queues eight backtests makes everyone else wait
behind all eight. :class:`FairPool` keeps one queue per user and its workers take the users in
turn (round robin), so each user's next backtest waits for at most one turn of every other
waiting user, however many the first one queued. (The per-user cap of
:data:`capandex.backtests.service.MAX_RUNNING_PER_USER` keeps each queue short anyway; in AWS the
Step Functions executions run side by side and the cap alone bounds a user's share.)
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future

logger = logging.getLogger("capandex.backtests")

Job = Callable[[], None]


class FairPool:
    """``workers`` threads running submitted jobs, one user at a time in turn.

    Jobs of one user run in the order submitted; between users, the worker that frees up takes
    the next job of the user after the one it served last (users with nothing queued are skipped).
    """

    def __init__(self, workers: int, name: str = "backtest") -> None:
        self._queues: OrderedDict[uuid.UUID, deque[tuple[Job, Future[None]]]] = OrderedDict()
        self._ready = threading.Condition()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, user_id: uuid.UUID, job: Job) -> Future[None]:
        """Queue ``job`` for ``user_id``; the future completes when it has run."""
        future: Future[None] = Future()
        with self._ready:
            self._queues.setdefault(user_id, deque()).append((job, future))
            self._ready.notify()
        return future

    def _next(self) -> tuple[Job, Future[None]]:
        """The first queued job of the user whose turn it is; that user goes to the back."""
        with self._ready:
            while not self._queues:
                self._ready.wait()
            user_id, queue = next(iter(self._queues.items()))
            job = queue.popleft()
            del self._queues[user_id]
            if queue:
                self._queues[user_id] = queue  # re-inserted last: the others go first
            return job

    def _work(self) -> None:
        while True:
            job, future = self._next()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                job()
            except BaseException as exc:  # the job records its own failure; the worker lives on
                logger.exception("background job failed")
                future.set_exception(exc)
            else:
                future.set_result(None)
