"""The bar-by-bar reference of DESIGN.md §5, and the live engine's entry point.

:func:`step` processes one newly closed candle ``t`` given the broker state left by candle ``t-1``:

a. the order pending from t-1's close fills at the open of t;
b. stop-loss / take-profit / trailing stop are checked inside bar t;
c. equity is marked at the close, the kill switch is checked, and the flow's signals at close t
   decide the order pending for t+1.

The live engine calls it once per closed candle (paper and live mode) and stores the returned
:class:`BrokerState` (``to_dict``/``from_dict`` are JSON-safe) until the next candle. A backtest is
the same loop over every bar (:func:`run_stepper`, used by the tests as the reference the
vectorised simulator must reproduce).

**History and recursive indicators.** Signals come from the same compiled evaluator as the
backtest, run over the ``candles`` passed in, and read at their last bar. Indicator values at a
bar depend only on earlier bars (no lookahead), and on where the series starts: EMA, RSI, ATR and
MACD are recursive and seeded at the start. Two ways to use it:

* pass every candle since a fixed anchor (e.g. the backtest's first candle): the values are then
  bit-identical to the backtest's (proven by the property tests);
* pass a trailing window of at least :attr:`CompiledFlow.history` candles: the seed's weight has
  then decayed below 1e-12 (``(1 - alpha) ** bars``), so indicator values agree with the full
  history to ~1e-12 relative and decisions differ only on a near-exact tie.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from capandex.engine import rules
from capandex.engine.candles import Candles
from capandex.engine.compiler import CompiledFlow, Signals
from capandex.engine.document import Risk, RunSettings
from capandex.engine.result import Trade, make_trade


@dataclass(frozen=True, slots=True)
class Order:
    """An order to fill at the next open: ``side`` buy/sell; ``reason`` signal/kill_switch;
    ``action`` is the index in ``Flow.buys`` of the buy action that fired (its sizing applies)."""

    side: str
    reason: str = "signal"
    action: int = 0


@dataclass(frozen=True, slots=True)
class BrokerState:
    """Everything the engine carries from one candle to the next (JSON-safe via to_dict).

    Money is in quote currency, times in epoch ms. ``units`` is 0 when flat; ``entry_*`` describe
    the open position; ``highest`` is the highest high of the bars from the entry bar through the
    last processed bar (None before the first full bar), for the trailing stop; ``peak`` is the
    peak equity at a close; ``killed`` stops all entries for good; ``pending`` is the order that
    fills at the next open; ``last_time`` is the last processed candle.
    """

    cash: float
    peak: float
    units: float = 0.0
    entry_time: int | None = None
    entry_price: float | None = None
    entry_spent: float = 0.0
    highest: float | None = None
    killed: bool = False
    pending: Order | None = None
    last_time: int | None = None

    @classmethod
    def start(cls, capital: float) -> BrokerState:
        """A flat account with ``capital`` in cash."""
        return cls(cash=float(capital), peak=float(capital))

    @property
    def long(self) -> bool:
        return self.entry_time is not None

    def position(self) -> tuple[int, float]:
        """The open position's entry time and fill price; :class:`ValueError` when flat."""
        if self.entry_time is None or self.entry_price is None:
            raise ValueError("the broker state holds no open position")
        return self.entry_time, self.entry_price

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BrokerState:
        pending = data.get("pending")
        return cls(**{**data, "pending": Order(**pending) if pending else None})


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one candle: the new state, the trade closed in it (if any), the equity at
    its close, the order for the next open (``state.pending``), and whether it opened a position."""

    state: BrokerState
    trade: Trade | None
    equity: float
    order: Order | None
    opened: bool = False


def step(compiled: CompiledFlow, candles: Candles, state: BrokerState, settings: RunSettings, *,
         final: bool = False, signals: Signals | None = None) -> StepResult:
    """Process the last candle of ``candles`` (the newest closed one) from ``state``.

    Args:
        compiled: the flow (:func:`capandex.engine.compile_flow`).
        candles: closed candles ending with the one to process; see the module docstring for how
            much history to pass.
        state: the state returned for the previous candle (:meth:`BrokerState.start` at first).
        settings: capital (unused here), fee and slippage as fractions.
        final: the last candle of a backtest: ignore its signals and close an open position at
            its close (``end_of_data``).
        signals: ``compiled.signals`` of a series that starts with ``candles`` and may run past
            them, evaluated once for several steps (the evaluation is causal, so the value at the
            last candle is the same): stepping through n candles then costs one evaluation, not n.

    Raises:
        ValueError: the candle is not newer than ``state.last_time`` (already processed).
    """
    t = len(candles) - 1
    time = int(candles.time[t])
    if state.last_time is not None and time <= state.last_time:
        raise ValueError(f"candle {time} is not newer than the last processed one ({state.last_time})")
    o, h, lo, c = (float(a[t]) for a in (candles.open, candles.high, candles.low, candles.close))
    fee, slip, risk = settings.fee, settings.slippage, compiled.flow.risk
    trade, opened = None, False

    # a. the pending order fills at the open
    order, state = state.pending, replace(state, pending=None, last_time=time)
    if order is not None and order.side == "buy" and not state.long:
        state, opened = _open(state, time, rules.buy_fill(o, slip), _sizing_of(compiled, order, settings),
                              fee), True
    elif order is not None and order.side == "sell" and state.long:
        state, trade = _close(state, time, rules.sell_fill(o, slip), order.reason, fee)

    # b. stops inside the bar
    if state.long:
        state, stopped = _stops_inside(state, time, o, h, lo, risk, slip, fee)
        trade = stopped or trade

    # c. the close: equity, kill switch, signals
    equity = float(rules.equity(state.cash, state.units, c))
    state = replace(state, peak=max(state.peak, equity))
    if risk.kill_switch is not None and not state.killed and bool(
            rules.kill_switch_hit(equity, state.peak, risk.kill_switch)):
        state = replace(state, killed=True, pending=Order("sell", "kill_switch") if state.long else None)
    if final:
        if state.long:
            state, trade = _close(state, time, rules.sell_fill(c, slip), "end_of_data", fee)
            equity = float(rules.equity(state.cash, state.units, c))
        return StepResult(state=replace(state, pending=None), trade=trade, equity=equity, order=None,
                          opened=opened)
    if not state.killed:
        signals = signals if signals is not None else compiled.signals(candles)
        if not state.long and signals.buy[t]:
            state = replace(state, pending=Order("buy", "signal", int(signals.choice[t])))
        elif state.long and signals.sell[t]:
            state = replace(state, pending=Order("sell", "signal"))
    return StepResult(state=state, trade=trade, equity=equity, order=state.pending, opened=opened)


def _sizing_of(compiled: CompiledFlow, order: Order, settings: RunSettings) -> rules.Sizing:
    return rules.sizing_for(compiled.flow.buys[order.action], compiled.flow.risk, settings)


def buy_units(compiled: CompiledFlow, action: int, cash: float, fill: float, settings: RunSettings) -> float:
    """Units the flow's buy action number ``action`` (index in ``Flow.buys``) buys with ``cash``
    quote at ``fill`` (a price including slippage): the stepper's own sizing rule, for callers
    that place the order themselves (the live engine, webhooks)."""
    sizing = rules.sizing_for(compiled.flow.buys[action], compiled.flow.risk, settings)
    _, units, _ = rules.open_position(cash, fill, settings.fee, sizing.fraction, sizing.amount)
    return float(units)


def _stops_inside(state: BrokerState, time: int, o: float, h: float, lo: float, risk: Risk, slip: float,
                  fee: float) -> tuple[BrokerState, Trade | None]:
    """The open position's stop-loss, trailing stop and take-profit against one bar's open, high
    and low: the position closed at the level :func:`rules.stop_exit` picks, or (none crossed)
    the trailing high raised to the bar's high."""
    _, entry = state.position()
    code, price = rules.stop_exit(
        o, h, lo,
        rules.stop_loss_level(entry, risk.stop_loss) if risk.stop_loss is not None else -math.inf,
        rules.trailing_level(entry, -math.inf if state.highest is None else state.highest,
                             risk.trailing_stop) if risk.trailing_stop is not None else -math.inf,
        rules.take_profit_level(entry, risk.take_profit) if risk.take_profit is not None else math.inf,
        slip)
    if int(code) >= 0:
        return _close(state, time, float(price), rules.REASONS[int(code)], fee)
    return replace(state, highest=h if state.highest is None else max(state.highest, h)), None


def _open(state: BrokerState, time: int, fill: float, sizing: rules.Sizing, fee: float) -> BrokerState:
    spent, units, cash = rules.open_position(state.cash, fill, fee, sizing.fraction, sizing.amount)
    return replace(state, cash=float(cash), units=float(units), entry_time=time, entry_price=fill,
                   entry_spent=float(spent), highest=None)


def _close(state: BrokerState, time: int, fill: float, reason: str, fee: float,
           ) -> tuple[BrokerState, Trade]:
    entry_time, entry_price = state.position()
    proceeds, cash = rules.close_position(state.cash, state.units, fill, fee)
    trade = make_trade(entry_time, time, entry_price, fill, state.units, state.entry_spent,
                       proceeds, fee, rules.REASONS.index(reason))
    return replace(state, cash=float(cash), units=0.0, entry_time=None,
                   entry_price=None, entry_spent=0.0, highest=None), trade


def run_stepper(compiled: CompiledFlow, candles: Candles, settings: RunSettings, *,
                window: int | None = None) -> tuple[list[Trade], list[float]]:
    """Backtest by stepping candle by candle (the reference semantics; O(n^2) in evaluation).

    ``window`` None evaluates signals on every candle since the first (exact); an int passes
    only the last ``window`` candles, as a live engine with bounded history would.
    """
    state = BrokerState.start(settings.capital)
    trades, equity = [], []
    n = len(candles)
    for t in range(n):
        start = 0 if window is None else max(0, t + 1 - window)
        result = step(compiled, candles.slice(start, t + 1), state, settings, final=t == n - 1)
        state = result.state
        equity.append(result.equity)
        if result.trade is not None:
            trades.append(result.trade)
    return trades, equity
