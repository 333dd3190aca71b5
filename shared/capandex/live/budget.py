"""One request budget per exchange key, in the database, shared by every execution on the key.

Fifty flows on one key must not trip the exchange's limits or get the key (or Capandex's IP)
banned: each Lambda container has its own ccxt client and its own request spacing, so only a
budget kept where all of them meet — the ``rate_limits`` table, as the chat's limit — holds across
them. Every private request of a live execution (placing, looking up or cancelling an order,
reading the balance, and their retries) and the dashboard's balance read of the key
(:mod:`capandex.keys.balance`) books one token of its key's bucket first
(:class:`KeyBudget`, through :meth:`capandex.exchanges.ExchangeClient.with_budget`); the bucket's
size and rate per exchange are data (:data:`capandex.exchanges.limits.KEY_LIMITS`).

**Waiting, not refusing.** A booking returns when its slot comes (:meth:`capandex.ratelimit.Bucket.reserve`:
concurrent workers queue one slot apart), so a burst of ticks due in the same minute is spread
over it instead of being refused. A slot further away than :data:`MAX_WAIT_S` is not waited for:
the request fails as rate limited (a transient failure: the tick's intent is released and the next
pass resumes it with the same client ids). An exchange answering 429/418 with ``Retry-After``
empties the key's bucket for that long (:meth:`KeyBudget.back_off`), so no other execution on the
key sends anything before it.

**Never past the invocation's end.** Inside :func:`until` (the tick worker sets it per SQS record
from Lambda's remaining time) a slot is waited for only while it still leaves
:data:`FINISH_RESERVE_S` before that deadline: a wait that would run the Lambda into its timeout
fails the request as rate limited instead, so the worker reports that record for redelivery and
every record it finished stays finished (a timed-out invocation would redeliver the whole batch).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capandex.errors import RateLimited
from capandex.exchanges.limits import KeyLimit
from capandex.ratelimit import Bucket

if TYPE_CHECKING:
    from capandex.exchanges import ExchangeClient

#: the longest one request waits for its slot (seconds): a worker has 60 s for its batch
MAX_WAIT_S = 20.0

#: seconds a request must still have after its slot, before the invocation's deadline: the request
#: itself (the exchange's 10 s timeout) and recording the tick's outcome
FINISH_RESERVE_S = 15.0

#: an indirection so tests can watch the waiting
sleep = time.sleep

#: ``time.monotonic()`` by which the current invocation must be done (None: no deadline)
_deadline: ContextVar[float | None] = ContextVar("capandex_budget_deadline", default=None)


@contextmanager
def until(deadline: float | None) -> Iterator[None]:
    """Cap every :meth:`KeyBudget.acquire` inside by ``deadline`` (``time.monotonic()`` seconds)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _patience(max_wait_s: float) -> float:
    """How long a slot may be waited for: ``max_wait_s``, less what the deadline does not leave."""
    deadline = _deadline.get()
    if deadline is None:
        return max_wait_s
    return min(max_wait_s, deadline - time.monotonic() - FINISH_RESERVE_S)


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """The request budget of the exchange key ``key_id`` of ``user_id`` (a
    :class:`~capandex.exchanges.limits.RequestBudget`)."""

    user_id: uuid.UUID
    key_id: str
    limit: KeyLimit
    max_wait_s: float = MAX_WAIT_S

    @property
    def bucket(self) -> Bucket:
        """The key's ``rate_limits`` row: ``key:`` and 28 hex digits of the key id's SHA-256."""
        name = "key:" + hashlib.sha256(self.key_id.encode()).hexdigest()[:28]
        return Bucket(name, self.limit.burst, self.limit.per_second, "requests with this exchange key")

    def acquire(self) -> None:
        """Book the next slot and wait for it.

        Raises:
            RateLimited: the slot is more than ``max_wait_s`` away (or further than the deadline of
                :func:`until` allows), or the exchange asked the key to wait longer than
                ``max_wait_s`` (:meth:`back_off`) while this request waited for its slot.
        """
        from capandex.db.session import transaction

        bucket = self.bucket
        with transaction() as conn:  # the server's role: users may not write their buckets
            wait = bucket.reserve(conn, user_id=self.user_id, max_wait_s=max(_patience(self.max_wait_s), 0.0))
        if wait <= 0:
            return
        sleep(wait)
        with transaction() as conn:  # an exchange's Retry-After while we waited cancels the slot
            behind = bucket.wait_s(conn, user_id=self.user_id)
        if behind > self.max_wait_s:
            raise RateLimited(f"The exchange is rate limiting this key: no request with it for the next "
                              f"{behind:.0f} s.", retry_after=behind)

    def back_off(self, seconds: float) -> None:
        """No request with this key for ``seconds`` (the exchange's Retry-After)."""
        from capandex.db.session import transaction

        with transaction() as conn:
            self.bucket.drain(conn, user_id=self.user_id, seconds=seconds)


def budgeted(client: ExchangeClient, user_id: uuid.UUID, key_id: str) -> ExchangeClient:
    """``client`` booking every request against the key's budget."""
    return client.with_budget(KeyBudget(user_id, key_id, client.key_limit))
