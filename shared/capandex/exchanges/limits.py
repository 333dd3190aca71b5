"""How fast one API key may call an exchange's private endpoints: a budget per key, as data.

Live trading places orders and reads the account with each user's own key, and a user may run many
flows on one key: their requests add up against the limits the exchange sets per account (and, on
Binance, per IP). :data:`KEY_LIMITS` is the token bucket Capandex keeps per key in the database
(:mod:`capandex.live.budget`; the dashboard's balance reads book it too), about half of what each
exchange documents, so that several Capandex workers and the user's own tools fit under it:

========  ====================================================================  ==========================
exchange  documented (spot)                                                     Capandex's budget per key
========  ====================================================================  ==========================
binance   ``ORDERS`` 100 per 10 s per account; ``REQUEST_WEIGHT`` 6,000 per      burst 20, 8 per second
          minute per IP (an order costs 1, a lookup 4, the account 20)
okx       placing 60 per 2 s, order details 60 per 2 s, balance 10 per 2 s       burst 10, 4 per second
          per user id
bybit     create 20 per second, order lists and wallet 50 per second per UID    burst 20, 8 per second
========  ====================================================================  ==========================

One request (an order, a lookup, a cancel, a balance read, a retry) takes one token. An answer of
429 or 418 with ``Retry-After`` empties the key's bucket for that long (:meth:`RequestBudget.back_off`),
so no other execution on the key keeps knocking (Binance bans an IP that sends on after a 429).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class KeyLimit:
    """A token bucket: ``burst`` requests at once, ``per_second`` sustained."""

    burst: int
    per_second: float


#: ccxt id → the budget of one key (the module docstring's table)
KEY_LIMITS: dict[str, KeyLimit] = {
    "binance": KeyLimit(20, 8.0),
    "okx": KeyLimit(10, 4.0),
    "bybit": KeyLimit(20, 8.0),
}
#: exchanges without a row (data and paper only: no orders) get this
DEFAULT_KEY_LIMIT = KeyLimit(10, 2.0)


def key_limit(ccxt_id: str) -> KeyLimit:
    """The budget of one key on ``ccxt_id``."""
    return KEY_LIMITS.get(ccxt_id, DEFAULT_KEY_LIMIT)


class RequestBudget(Protocol):
    """What an :class:`~capandex.exchanges.ExchangeClient` asks before each request it sends."""

    def acquire(self) -> None:
        """Wait for this request's slot.

        Raises:
            RateLimited: the slot is further away than the caller may wait.
        """

    def back_off(self, seconds: float) -> None:
        """The exchange answered 429/418: no request on this key for ``seconds``."""
