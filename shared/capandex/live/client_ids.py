"""Deterministic client order ids.

Binance accepts ``newClientOrderId`` of at most 36 characters from ``[.A-Z:/a-z0-9_-]`` (other
exchanges are at least as permissive up to 32: OKX ``clOrdId`` 32 alphanumerics, Bybit
``orderLinkId`` 36). The id is ``cx`` + the first 30 hex digits of SHA-256 over
``execution_id|candle_ms|action``: 32 alphanumeric characters, valid everywhere, and the same
on every retry of the same decision, so the exchange itself refuses a second order for it.
"""

from __future__ import annotations

import hashlib


def client_order_id(execution_id: str, candle_ms: int, action: str) -> str:
    """The id of the order that ``action`` (``buy``, ``sell``, ``stop_loss``, ``webhook:<key>`` …)
    of ``execution_id`` places for the candle opening at ``candle_ms``."""
    digest = hashlib.sha256(f"{execution_id}|{int(candle_ms)}|{action}".encode()).hexdigest()
    return "cx" + digest[:30]
