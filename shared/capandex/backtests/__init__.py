"""Backtests as a service: validation, in-request or background runs, stored results.

Public API::

    from capandex.backtests import submit, get_backtest, BacktestCreate
    submission = submit(user_id, BacktestCreate(...))  # completed (with the result) or started
    get_backtest(conn, user_id, backtest_id)           # progress, then the result
    backtest_trades(conn, user_id, backtest_id, offset, limit)  # every trade, a page at a time

Three modules, one direction: :mod:`~capandex.backtests.service` (submit and read) →
:mod:`~capandex.backtests.jobs` (the background steps by backtest id: Step Functions tasks in
``functions/backtest/handlers.py``, ``capandex serve``'s pool) → :mod:`~capandex.backtests.core`
(plan → candles → run → store, the seams every path shares — start there to build on backtests).
"""

from capandex.backtests.models import BacktestCreate, BacktestPublic, TradesPublic
from capandex.backtests.service import Submission, start_async, submit, validate_range, wait_local
from capandex.backtests.service import get as get_backtest
from capandex.backtests.service import trades as backtest_trades

__all__ = ["BacktestCreate", "BacktestPublic", "Submission", "TradesPublic", "backtest_trades", "get_backtest",
           "start_async", "submit", "validate_range", "wait_local"]
