"""The fill and sizing rules of DESIGN.md §5, written once.

Every function here is pure and works on Python floats and on numpy arrays alike, so the
vectorised simulator (:mod:`.simulator`) and the bar-by-bar stepper (:mod:`.stepper`) call the very
same expressions and get the same floating-point results. Percent arguments are in percent
(2 = 2 %); ``fee`` and ``slippage`` are fractions (0.001 = 0.1 %).

Types: a price, amount or level is :data:`Real`, a float or a float64 array, and comes back as
the same kind. numpy types its ufuncs (``np.maximum``, ``np.where``…) as returning Any for
scalars, so those few results are annotated with the kind they are (``np.float64`` is a float).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from capandex.engine.document import BuyAction, Risk, RunSettings

#: one bar's value (the stepper's Python floats) or every bar's (the simulator's float64 arrays)
Real = TypeVar("Real", float, npt.NDArray[np.float64])
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: exit reasons, in the order of their integer codes inside the simulator
REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "kill_switch", "end_of_data")
SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, KILL_SWITCH, END_OF_DATA = range(6)

#: relative tolerance of the "reaches" tests (stop levels, take-profit level, kill-switch threshold).
#: §5's arithmetic is exact, floats are not: ``51 * (1 - 5/100)`` is 48.449999999999996, one ulp
#: under 48.45, and ``(1 - 10_800/12_000) * 100`` is 9.999999999999998, so a low printed at exactly
#: the stop level, or a drawdown of exactly the kill-switch percent, would not count. 1e-12 is far
#: above float rounding and far below any price tick, so only such exact touches change.
REACH_TOLERANCE = 1e-12


def buy_fill(open_: Real, slippage: float) -> Real:
    """Market buy at the bar's open: ``open * (1 + slippage)``."""
    return open_ * (1.0 + slippage)


def sell_fill(price: Real, slippage: float) -> Real:
    """Market sell (signal, kill switch, stop, end of data): ``price * (1 - slippage)``."""
    return price * (1.0 - slippage)


def stop_loss_level(entry: Real, percent: float) -> Real:
    """Stop-loss trigger level: ``entry * (1 - percent / 100)``."""
    return entry * (1.0 - percent / 100.0)


def take_profit_level(entry: Real, percent: float) -> Real:
    """Take-profit limit level: ``entry * (1 + percent / 100)``."""
    return entry * (1.0 + percent / 100.0)


def trailing_level(entry: Real, highest_before: Real, percent: float) -> Real:
    """Trailing stop at bar k: ``max(entry, highest high of bars entry..k-1) * (1 - percent / 100)``.

    ``highest_before`` is -inf (or anything below ``entry``) on the entry bar itself.
    """
    level: Real = np.maximum(entry, highest_before) * (1.0 - percent / 100.0)
    return level


def stop_threshold(level: Real) -> Real:
    """The highest low that reaches a stop level: ``level`` widened by :data:`REACH_TOLERANCE`."""
    return level * (1.0 + REACH_TOLERANCE)


def take_profit_threshold(level: Real) -> Real:
    """The lowest high that reaches a take-profit level: ``level`` less :data:`REACH_TOLERANCE`."""
    return level * (1.0 - REACH_TOLERANCE)


@overload
def stop_reached(low: float, level: float) -> bool: ...
@overload
def stop_reached(low: Floats, level: Floats) -> Bools: ...


def stop_reached(low: Real, level: Real) -> bool | Bools:
    """The bar's low reaches a stop(-loss or trailing) level: ``low <= level`` (a touch counts)."""
    return low <= stop_threshold(level)


@overload
def take_profit_reached(high: float, level: float) -> bool: ...
@overload
def take_profit_reached(high: Floats, level: Floats) -> Bools: ...


def take_profit_reached(high: Real, level: Real) -> bool | Bools:
    """The bar's high reaches the take-profit level: ``high >= level`` (a touch counts)."""
    return high >= take_profit_threshold(level)


def stop_exit_price(open_: Real, level: Real, slippage: float) -> Real:
    """Stop-market exit once the low reaches ``level``: the level, or the open if it gapped below."""
    worst: Real = np.minimum(open_, level)
    return sell_fill(worst, slippage)


def take_profit_exit_price(open_: Real, level: Real) -> Real:
    """Limit exit once the high reaches ``level``: the level, or the open if it gapped above.

    A limit order gets no slippage.
    """
    best: Real = np.maximum(open_, level)
    return best


def buy_fraction(fee: float, slippage: float, size_percent: float | None = None, risk_percent: float | None = None,
                 stop_loss: float | None = None) -> float:
    """Fraction of equity a buy spends (fee included) for ``sizePercent`` or ``riskPercent``.

    ``sizePercent``: ``size_percent / 100``. ``riskPercent``: the spend for which hitting the
    stop-loss exactly at its level loses ``risk_percent`` % of equity, counting both fees and the
    exit slippage; per unit bought at fill F that loss is
    ``F * (1 + fee) - F * (1 - stop/100) * (1 - slippage) * (1 - fee)``, so the fraction does not
    depend on F. Capped at 1 (100 % of equity). A gap through the stop loses more: that is the
    risk the trader accepts.

    Raises:
        ValueError: neither ``size_percent`` nor ``risk_percent`` with ``stop_loss`` (a validated
            flow never asks that).
    """
    if risk_percent is None:
        if size_percent is None:
            raise ValueError("a fraction needs sizePercent, or riskPercent and a stop-loss")
        return size_percent / 100.0
    if stop_loss is None:
        raise ValueError("riskPercent needs a stop-loss")
    loss_per_spent = 1.0 - (1.0 - stop_loss / 100.0) * (1.0 - slippage) * (1.0 - fee) / (1.0 + fee)
    return min(1.0, (risk_percent / 100.0) / loss_per_spent)


@dataclass(frozen=True, slots=True)
class Sizing:
    """How one buy sizes: a fraction of equity, or a fixed quote amount (fees included)."""

    fraction: float | None = None
    amount: float | None = None


def sizing_for(action: BuyAction, risk: Risk, settings: RunSettings) -> Sizing:
    """How ``action`` sizes its buys under ``risk`` and ``settings`` (see :class:`Sizing`)."""
    if action.amount is not None:
        return Sizing(amount=action.amount)
    return Sizing(fraction=buy_fraction(settings.fee, settings.slippage, action.size_percent,
                                         action.risk_percent, risk.stop_loss))


def spend(cash: Real, fraction: float | None = None, amount: float | None = None) -> Real:
    """Quote currency a buy spends, fee included: ``cash * fraction``, or ``min(amount, cash)``."""
    if amount is not None:
        capped: Real = np.minimum(amount, cash)
        return capped
    if fraction is None:
        raise ValueError("a buy spends a fraction or an amount")
    return cash * fraction


def units_for(spent: Real, fill: Real, fee: float) -> Real:
    """Units bought for ``spent`` quote (fee included): ``spent / (fill * (1 + fee))``."""
    return spent / (fill * (1.0 + fee))


def exit_proceeds(units: Real, fill: Real, fee: float) -> Real:
    """Cash received for a sell: ``units * fill * (1 - fee)``."""
    return units * fill * (1.0 - fee)


@overload
def kill_switch_hit(equity: float, peak: float, percent: float) -> bool: ...
@overload
def kill_switch_hit(equity: Floats, peak: Floats, percent: float) -> Bools: ...


def kill_switch_hit(equity: float | Floats, peak: float | Floats, percent: float) -> bool | Bools:
    """True when ``(1 - equity / peak) * 100 >= percent`` (drawdown from the peak, at a close).

    A drawdown of exactly ``percent`` counts (see :data:`REACH_TOLERANCE`).
    """
    return (1.0 - equity / peak) * 100.0 >= percent - 100.0 * REACH_TOLERANCE


def cash_after_entry(cash: Real, spent: Real) -> Real:
    """Cash left after a buy that spent ``spent`` (fee included)."""
    return cash - spent


def cash_after_exit(cash: Real, proceeds: Real) -> Real:
    """Cash after a sell that received ``proceeds`` (fee deducted)."""
    return cash + proceeds


def equity(cash: Real, units: Real, close: Real) -> Real:
    """Equity at a close: ``cash + units * close`` (units 0 when flat)."""
    return cash + units * close


def stop_exit(open_: Real, high: Real, low: Real, stop_loss: Real, trailing: Real, take_profit: Real,
              slippage: float) -> tuple[npt.NDArray[np.int64], Floats]:
    """Which stop fires inside a bar, and at what price (element-wise over arrays).

    Levels are prices; pass -inf for an unset stop-loss/trailing stop and +inf for an unset
    take-profit. The protective stop is the higher of stop-loss and trailing level; it fires when
    the low reaches it and wins over the take-profit in the same bar (§5: we cannot know which
    came first, so assume the worse) — except when the bar *opens* at or above the take-profit:
    then the limit order filled at the open, before any later low (DESIGN.md §5 read literally
    would book the stop for a trade the exchange had already closed in profit).
    Returns ``(reason code or -1, exit fill price)`` as arrays (0-dimensional for floats).
    """
    stop: Floats = np.maximum(stop_loss, trailing)
    tp_at_open = np.asarray(take_profit_reached(np.asarray(open_), np.asarray(take_profit)))
    stop_hit = stop_reached(np.asarray(low), stop) & ~tp_at_open
    tp_hit = take_profit_reached(np.asarray(high), np.asarray(take_profit))
    stop_reason = np.where(trailing > stop_loss, TRAILING_STOP, STOP_LOSS)
    code: npt.NDArray[np.int64] = np.where(stop_hit, stop_reason, np.where(tp_hit, TAKE_PROFIT, -1))
    with np.errstate(invalid="ignore", over="ignore"):
        price: Floats = np.where(stop_hit, stop_exit_price(np.asarray(open_), stop, slippage),
                                 take_profit_exit_price(np.asarray(open_), np.asarray(take_profit)))
    return code, price


def open_position(cash: Real, fill: Real, fee: float, fraction: float | None = None,
                  amount: float | None = None) -> tuple[Real, Real, Real]:
    """A buy at ``fill``: returns ``(spent, units, cash left)``; see :func:`spend`, :func:`units_for`."""
    spent = spend(cash, fraction, amount)
    return spent, units_for(spent, fill, fee), cash_after_entry(cash, spent)


def settle_fractions(cash: float, fractions: Sequence[float], entry_fills: Floats, exit_fills: Floats,
                     fee: float) -> tuple[list[float], list[float], list[float], list[float]]:
    """Carry cash through consecutive round trips that each spend a fraction of it.

    The same arithmetic, in the same order, as :func:`open_position` then :func:`close_position`
    per trade (so the bar-by-bar stepper reproduces it bit for bit — the property tests check
    this), written as one loop over plain floats because the backtest runs it for every trade
    (tens of thousands on a million candles). Returns lists ``(spent, units, proceeds, cash
    after each trade)``.
    """
    entry_cost_per_unit: list[float] = (entry_fills * (1.0 + fee)).tolist()  # units_for's denominator
    exits: list[float] = exit_fills.tolist()
    keep = 1.0 - fee
    spent_out, units_out, proceeds_out, cash_out = [], [], [], []
    for fraction, per_unit, fill in zip(fractions, entry_cost_per_unit, exits, strict=True):
        spent = cash * fraction
        units = spent / per_unit
        proceeds = units * fill * keep
        cash = (cash - spent) + proceeds
        spent_out.append(spent)
        units_out.append(units)
        proceeds_out.append(proceeds)
        cash_out.append(cash)
    return spent_out, units_out, proceeds_out, cash_out


def settle_fraction_runs(capital: float, fractions: Floats, entry_fills: Floats, exit_fills: Floats,
                         counts: npt.NDArray[np.int64], fee: float) -> tuple[Floats, Floats, Floats, Floats]:
    """:func:`settle_fractions` for many runs at once, one loop over the trade index.

    The runs' trades lie back to back in the flat arrays ``fractions``, ``entry_fills`` and
    ``exit_fills``, run r holding ``counts[r]`` of them, runs sorted by ``counts`` descending (so the
    runs still trading at index k are a prefix). Step k settles trade k of every such run with
    numpy: the same operations, in the same order, as the float loop — IEEE float64 arithmetic
    rounds identically element-wise, so every number equals what :func:`settle_fractions` gives
    for that run alone. Returns flat arrays ``(spent, units, proceeds, cash after each trade)``.
    """
    starts = np.cumsum(counts) - counts
    entry_cost_per_unit = entry_fills * (1.0 + fee)
    keep = 1.0 - fee
    spent_out, units_out, proceeds_out, cash_out = (np.empty(len(fractions)) for _ in range(4))
    cash = np.full(len(counts), float(capital))
    active = len(counts)
    for k in range(int(counts[0]) if len(counts) else 0):
        while counts[active - 1] <= k:
            active -= 1
        at = starts[:active] + k
        held_cash = cash[:active]
        spent = held_cash * fractions[at]
        units = spent / entry_cost_per_unit[at]
        proceeds = units * exit_fills[at] * keep
        cash[:active] = (held_cash - spent) + proceeds
        spent_out[at], units_out[at], proceeds_out[at], cash_out[at] = spent, units, proceeds, cash[:active]
    return spent_out, units_out, proceeds_out, cash_out


def close_position(cash: Real, units: Real, fill: Real, fee: float) -> tuple[Real, Real]:
    """A sell of ``units`` at ``fill``: returns ``(proceeds, cash after)``."""
    proceeds = exit_proceeds(units, fill, fee)
    return proceeds, cash_after_exit(cash, proceeds)
