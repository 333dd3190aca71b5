"""Backtests as a service: validation, in-request or background runs, stored results.

Public API::

    from capandex.backtests import submit, get_backtest, BacktestCreate
    status, body = submit(user_id, BacktestCreate(...))      # 200 + result, or 202 running
    get_backtest(conn, user_id, backtest_id)                 # progress, then the result

The steps (plan → fetch chunks → run → store; fail) are in :mod:`capandex.backtests.jobs`,
shared by the in-process path and the Step Functions tasks (``functions/backtest/handlers.py``).
"""

from capandex.backtests.models import BacktestCreate, BacktestPublic
from capandex.backtests.service import get as get_backtest
from capandex.backtests.service import start_async, submit, validate_range, wait_local

__all__ = ["BacktestCreate", "BacktestPublic", "get_backtest", "start_async", "submit", "validate_range",
           "wait_local"]
