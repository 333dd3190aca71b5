"""The vectorised simulation of DESIGN.md §5.

The reference semantics is the bar-by-bar :mod:`.stepper`; this module computes the same trades
without a Python loop over bars (a hypothesis test proves them equal):

1. *Signal schedule.* Flat, a buy at close t enters at open t+1; long, a sell exits at open t+1;
   a bar where both fire flips the state. The state after every close is therefore the last
   "pure" signal (buy xor sell) with the parity of the "both" bars since then — two cumulative
   passes, no loop. The state changes only at bars where a signal fires, so the passes run over
   those bars alone.
2. *Stops.* Trades do not overlap, so each bar belongs to at most one trade; stop levels are
   expanded per bar and the first hit of each trade is one segmented reduction
   (``np.minimum.reduceat``). Without a trailing stop, segment extremes first discard the trades
   that never come near their levels; a caller that simulates many runs over one series passes
   :class:`~capandex.engine.ranges.RangeExtremes`, and each trade's first stop bar is then found
   by binary lifting instead of a pass over its bars.
3. *Schedule repair.* A stop exit at bar k leaves the trader flat from k on, so the next entry is
   the first buy at or after k. When that is the entry the signal schedule already had (the usual
   case: a cross strategy cannot re-cross before it crosses back) nothing changes; otherwise the
   schedule is recomputed from k. Only such changes cost another pass, over a window that adapts
   to how far the last pass got.
4. *Money.* Cash is carried trade by trade through the shared :mod:`.rules` (one float loop over
   trades, not bars), so the stepper's numbers are reproduced bit for bit; the kill switch is then
   found with one vectorised drawdown pass (it can only truncate the schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capandex.engine import rules
from capandex.engine.candles import Candles
from capandex.engine.compiler import Signals
from capandex.engine.document import BuyAction, Risk, RunSettings
from capandex.engine.ranges import RangeExtremes

_MIN_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class Simulation:
    """The raw outcome: per-trade arrays (bar indices, fill prices, sizes) and per-bar equity.

    ``exit_bar`` is the bar in which the exit happened (at its open for signal and kill switch
    exits, inside it for stops, at its close for ``end_of_data``); ``reason`` indexes
    :data:`rules.REASONS`. ``spent`` is the cash paid at entry (fees included), ``proceeds`` the
    cash received at exit (fees deducted).
    """

    entry_bar: np.ndarray
    exit_bar: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    reason: np.ndarray
    units: np.ndarray
    spent: np.ndarray
    proceeds: np.ndarray
    entry_fee: np.ndarray
    exit_fee: np.ndarray
    equity: np.ndarray
    killed_at: int | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A run's trades before money (steps 1-3): ``entry_bar`` is the bar whose open fills the buy,
    the rest as in :class:`Simulation`; ``sizing`` says how each entry sizes."""

    entry_bar: np.ndarray
    exit_bar: np.ndarray
    reason: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    sizing: list[rules.Sizing]


@dataclass(frozen=True, slots=True)
class Money:
    """Step 4 per trade: units, cash spent (fees included), cash received (fees deducted), and the
    cash before each trade followed by the final cash (one more element than trades)."""

    units: np.ndarray
    spent: np.ndarray
    proceeds: np.ndarray
    cash_before: np.ndarray


def simulate(candles: Candles, signals: Signals, buys: tuple[BuyAction, ...], risk: Risk,
             settings: RunSettings, extremes: RangeExtremes | None = None) -> Simulation:
    """Run §5 over ``candles`` for precomputed ``signals``; see the module docstring.

    ``extremes`` (built from these same candles) only makes stop detection faster; the result is
    identical with or without it.
    """
    plan = schedule(candles, signals, buys, risk, settings, extremes)
    money = settle(plan, settings)
    equity = equity_curve(candles, plan, money)
    killed_at = None
    if risk.kill_switch is not None:
        peak = np.maximum.accumulate(np.maximum(equity, settings.capital))
        hit = np.flatnonzero(rules.kill_switch_hit(equity, peak, risk.kill_switch))
        if len(hit):
            killed_at = int(hit[0])
            if killed_at < len(candles) - 1:
                plan = _stopped_at(candles, plan, killed_at, settings.slippage)
                money = settle(plan, settings)
                equity = equity_curve(candles, plan, money)
    return Simulation(entry_bar=plan.entry_bar, exit_bar=plan.exit_bar, entry_price=plan.entry_price,
                      exit_price=plan.exit_price, reason=plan.reason, units=money.units, spent=money.spent,
                      proceeds=money.proceeds, entry_fee=money.units * plan.entry_price * settings.fee,
                      exit_fee=money.units * plan.exit_price * settings.fee, equity=equity, killed_at=killed_at)


def schedule(candles: Candles, signals: Signals, buys: tuple[BuyAction, ...], risk: Risk, settings: RunSettings,
             extremes: RangeExtremes | None = None) -> Schedule:
    """Steps 1-3: every trade's bars, exit reason, fill prices and sizing (no kill switch: it needs
    the equity, see :func:`simulate`)."""
    buy, sell = signals.buy.copy(), signals.sell.copy()
    buy[-1] = sell[-1] = False  # a signal on the last candle does not fill
    entry_sig, exit_bar, reason, exit_price = _schedule(candles, buy, sell, risk, settings.slippage, extremes)
    entry_bar = entry_sig + 1
    by_action = [rules.sizing_for(action, risk, settings) for action in buys]
    return Schedule(entry_bar=entry_bar, exit_bar=exit_bar, reason=reason,
                    entry_price=rules.buy_fill(candles.open[entry_bar], settings.slippage), exit_price=exit_price,
                    sizing=[by_action[i] for i in signals.choice[entry_sig].tolist()])


def _stopped_at(candles: Candles, plan: Schedule, killed_at: int, slippage: float) -> Schedule:
    """The schedule cut by a kill switch hit at the close of ``killed_at``: no entry after it, and a
    position still open then is closed at the next open."""
    keep = plan.entry_bar <= killed_at
    entry_bar, exit_bar, reason, entry_price, exit_price = (
        a[keep] for a in (plan.entry_bar, plan.exit_bar, plan.reason, plan.entry_price, plan.exit_price))
    if len(exit_bar) and exit_bar[-1] > killed_at:  # open at that close: out next open
        exit_bar[-1], reason[-1] = killed_at + 1, rules.KILL_SWITCH
        exit_price[-1] = rules.sell_fill(candles.open[killed_at + 1], slippage)
    return Schedule(entry_bar, exit_bar, reason, entry_price, exit_price,
                    [s for s, k in zip(plan.sizing, keep.tolist(), strict=True) if k])


# -- 1. + 3. the schedule ------------------------------------------------------------------------
def _schedule(candles: Candles, buy: np.ndarray, sell: np.ndarray, risk: Risk, slippage: float,
              extremes: RangeExtremes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entry signal bars, exit bars, exit reasons and exit fill prices of every trade."""
    n = len(buy)
    events = np.flatnonzero(buy | sell)
    buy_bars = np.append(np.flatnonzero(buy), n)  # n: no buy from there on
    has_stops = any(v is not None for v in (risk.stop_loss, risk.take_profit, risk.trailing_stop))
    parts: list[tuple[np.ndarray, ...]] = []
    pos, window = 0, n
    while pos < n:
        stop = min(n, pos + window)
        entries, exits = _signal_trades(buy, sell, events, pos, stop)
        resume = stop
        if len(entries) > len(exits) and stop < n:  # the last trade is still open at the window's end
            if len(entries) == 1:
                window *= 2
                continue
            resume, entries = int(entries[-1]), entries[:-1]
        open_at_end = len(entries) - len(exits)  # 0, or 1 when that trade runs to the last bar
        # (np.concatenate, not np.r_: this runs once per pass of every backtest, and np.r_ is slow)
        last_bar = np.full(open_at_end, n - 1, dtype=np.int64)
        x_bar = np.concatenate((exits + 1, last_bar)).astype(np.int64)
        reason = np.concatenate((np.full(len(exits), rules.SIGNAL), np.full(open_at_end, rules.END_OF_DATA)))
        price = np.concatenate((rules.sell_fill(candles.open[exits + 1], slippage),
                                np.full(open_at_end, rules.sell_fill(candles.close[-1], slippage))))
        # stops are checked from the entry bar through the signal bar (the exit fills after it)
        check_end = np.concatenate((exits, last_bar)).astype(np.int64)
        if has_stops and len(entries):
            hit_bar, hit_reason, hit_price = _stops(candles, entries + 1, check_end, risk, slippage, extremes)
            stopped = hit_bar >= 0
            x_bar = np.where(stopped, hit_bar, x_bar)
            reason = np.where(stopped, hit_reason, reason)
            price = np.where(stopped, hit_price, price)
            # flat from the stop bar on: the next entry is the first buy at or after it
            next_entry = np.append(entries[1:], resume)
            next_buy = buy_bars[np.searchsorted(buy_bars, np.maximum(hit_bar, 0))]
            changed = np.flatnonzero(stopped & (next_buy < next_entry))
            if len(changed):
                j = int(changed[0])
                parts.append((entries[:j + 1], x_bar[:j + 1], reason[:j + 1], price[:j + 1]))
                window = max(_MIN_WINDOW, 2 * (int(x_bar[j]) - pos))
                pos = int(x_bar[j])
                continue
        parts.append((entries, x_bar, reason, price))
        pos = resume
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def _signal_trades(buy: np.ndarray, sell: np.ndarray, events: np.ndarray, start: int, stop: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit signal bars in ``[start, stop)``, flat before the close of ``start``.

    The state after close t is 1 (long or about to be) or 0. A pure buy sets 1, a pure sell sets
    0, a bar with both flips it (flat: the buy fires; long: the sell fires), a bar with neither
    keeps it — so the state is computed at the ``events`` (the bars where either fires) only.
    """
    low, high = np.searchsorted(events, (start, stop))
    bars = events[low:high]
    b, s = buy[bars], sell[bars]
    pure, both = b ^ s, b & s
    idx = np.arange(len(b))
    last_pure = np.maximum.accumulate(np.where(pure, idx, -1))
    known = last_pure >= 0
    anchor = np.maximum(last_pure, 0)
    state = known & b[anchor]
    if both.any():  # rare (e.g. crosses never fire together): only then count the flips
        flips = np.cumsum(both)
        parity = (flips - np.where(known, flips[anchor], 0)) & 1
        state ^= parity.astype(bool)
    before = np.concatenate(([False], state[:-1]))
    return bars[state & ~before], bars[~state & before]


# -- 2. stops inside the bars --------------------------------------------------------------------
def _stops(candles: Candles, first: np.ndarray, last: np.ndarray, risk: Risk, slippage: float,
           extremes: RangeExtremes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First stop/take-profit hit of each trade over bars ``first..last`` (inclusive).

    Returns the hit bar (-1 if none), the reason code and the exit fill price.
    """
    m = len(first)
    hit_bar = np.full(m, -1, dtype=np.int64)
    hit_reason = np.full(m, rules.SIGNAL, dtype=np.int64)
    hit_price = np.zeros(m)
    entry = rules.buy_fill(candles.open[first], slippage)
    sl = rules.stop_loss_level(entry, risk.stop_loss) if risk.stop_loss is not None else np.full(m, -np.inf)
    tp = (rules.take_profit_level(entry, risk.take_profit) if risk.take_profit is not None
          else np.full(m, np.inf))
    candidates = np.arange(m)[last >= first]
    if risk.trailing_stop is None and extremes is not None:
        # the first bar whose low reaches the stop or whose high reaches the take-profit is the
        # first bar where stop_exit fires (an open at or above the take-profit is a high there too)
        bar = extremes.first_reaching(first[candidates], last[candidates], rules.stop_threshold(sl[candidates]),
                                      rules.take_profit_threshold(tp[candidates]))
        found = bar <= last[candidates]
        trades, bar = candidates[found], bar[found]
        codes, prices = rules.stop_exit(candles.open[bar], candles.high[bar], candles.low[bar], sl[trades],
                                        np.full(len(trades), -np.inf), tp[trades], slippage)
        hit_bar[trades], hit_reason[trades], hit_price[trades] = bar, codes, prices
        return hit_bar, hit_reason, hit_price
    if risk.trailing_stop is None and len(candidates):
        # cheap pre-filter: only trades whose extreme low/high reach a level need a closer look
        bounds = _bounds(first[candidates], last[candidates], len(candles))
        lo = np.minimum.reduceat(candles.low, bounds)[::2]
        hi = np.maximum.reduceat(candles.high, bounds)[::2]
        candidates = candidates[rules.stop_reached(lo, sl[candidates])
                                | rules.take_profit_reached(hi, tp[candidates])]
    if not len(candidates):
        return hit_bar, hit_reason, hit_price
    f, lengths = first[candidates], last[candidates] - first[candidates] + 1
    owner = np.repeat(np.arange(len(candidates)), lengths)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    bars = np.arange(len(owner)) - offsets[owner] + f[owner]
    trail = np.full(len(bars), -np.inf)
    if risk.trailing_stop is not None:
        before = _segmented_running_max(candles.high[bars], owner, offsets)
        trail = rules.trailing_level(entry[candidates][owner], before, risk.trailing_stop)
    codes, prices = rules.stop_exit(candles.open[bars], candles.high[bars], candles.low[bars],
                                    sl[candidates][owner], trail, tp[candidates][owner], slippage)
    position = np.where(codes >= 0, np.arange(len(bars)), len(bars))
    first_hit = np.minimum.reduceat(position, offsets)
    found = first_hit < len(bars)
    where = first_hit[found]
    hit_bar[candidates[found]] = bars[where]
    hit_reason[candidates[found]] = codes[where]
    hit_price[candidates[found]] = prices[where]
    return hit_bar, hit_reason, hit_price


def _bounds(first: np.ndarray, last: np.ndarray, size: int) -> np.ndarray:
    """``reduceat`` indices whose even slots are the segments ``first..last`` (ordered, disjoint).

    The odd slots are the gaps between segments; their results are discarded.
    """
    out = np.empty(2 * len(first), dtype=np.int64)
    out[0::2], out[1::2] = first, last + 1
    return out[:-1] if out[-1] >= size else out


def _segmented_running_max(values: np.ndarray, owner: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Max of the earlier values of the same segment (-inf on a segment's first element).

    Ranks turn the values into integers so that ``owner * size + rank`` keeps segments apart
    inside one cumulative max, exactly (no float offsets).
    """
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    key = owner.astype(np.int64) * len(values) + rank
    running = np.maximum.accumulate(key) - owner.astype(np.int64) * len(values)
    best = values[order][running]
    out = np.empty(len(values))
    out[1:] = best[:-1]
    out[offsets] = -np.inf
    return out


# -- 4. money ------------------------------------------------------------------------------------
def settle(plan: Schedule, settings: RunSettings) -> Money:
    """Units, cash spent, cash received per trade, and the cash before each trade (+ the final).

    A float loop over trades (not bars) through :mod:`.rules`, in the stepper's order of
    operations, so both give identical numbers.
    """
    cash, fee, sizing = settings.capital, settings.fee, plan.sizing
    fractions = [size.fraction for size in sizing if size.amount is None and size.fraction is not None]
    spent: list[float]
    units: list[float]
    proceeds: list[float]
    if len(fractions) == len(sizing):  # the common case, every buy sizes by fraction: a tight float loop
        spent, units, proceeds, after = rules.settle_fractions(cash, fractions, plan.entry_price, plan.exit_price,
                                                               fee)
        cash_before = [cash, *after]
    else:
        spent, units, proceeds, cash_before = [], [], [], [cash]
        open_position, close_position = rules.open_position, rules.close_position  # hot loop: locals
        entries: list[float] = plan.entry_price.tolist()
        exits: list[float] = plan.exit_price.tolist()
        for entry, exit_, size in zip(entries, exits, sizing, strict=True):
            paid, bought, cash = open_position(cash, entry, fee, size.fraction, size.amount)
            got, cash = close_position(cash, bought, exit_, fee)
            spent.append(paid)
            units.append(bought)
            proceeds.append(got)
            cash_before.append(cash)
    return Money(*(np.array(a, dtype=np.float64) for a in (units, spent, proceeds, cash_before)))


def settle_many(plans: list[Schedule], settings: RunSettings) -> list[Money]:
    """:func:`settle` for many schedules under the same settings, with identical numbers: runs
    whose buys all size by a fraction of equity are settled together
    (:func:`rules.settle_fraction_runs`), the others one by one."""
    out: list[Money | None] = [None] * len(plans)
    together = [i for i, plan in enumerate(plans) if all(size.amount is None for size in plan.sizing)]
    for i in set(range(len(plans))) - set(together):
        out[i] = settle(plans[i], settings)
    together.sort(key=lambda i: -len(plans[i].entry_bar))
    if together:
        counts = np.array([len(plans[i].entry_bar) for i in together], dtype=np.int64)
        flat = (np.concatenate([plans[i].entry_price for i in together]),
                np.concatenate([plans[i].exit_price for i in together]))
        fractions = np.array([size.fraction for i in together for size in plans[i].sizing], dtype=np.float64)
        spent, units, proceeds, after = rules.settle_fraction_runs(settings.capital, fractions, *flat, counts,
                                                                   settings.fee)
        bounds = np.cumsum(counts)[:-1]
        for i, s, u, p, a in zip(together, *(np.split(x, bounds) for x in (spent, units, proceeds, after)),
                                 strict=True):
            out[i] = Money(units=u, spent=s, proceeds=p, cash_before=np.r_[settings.capital, a])
    return [money for money in out if money is not None]


def equity_curve(candles: Candles, plan: Schedule, money: Money) -> np.ndarray:
    """Equity at every close: cash + units × close, piecewise constant between fills.

    Bars ``entry..exit-1`` hold the position at their close; from the exit bar on the trader is
    flat (an ``end_of_data`` exit happens at the last close, so the last equity is all cash).
    """
    n, m = len(candles), len(plan.entry_bar)
    starts = np.empty(2 * m + 1, dtype=np.int64)
    starts[0], starts[1::2], starts[2::2] = 0, plan.entry_bar, plan.exit_bar
    cash = np.empty(2 * m + 1)
    cash[0::2] = money.cash_before
    cash[1::2] = rules.cash_after_entry(money.cash_before[:-1], money.spent)
    held = np.zeros(2 * m + 1)
    held[1::2] = money.units
    counts = np.diff(np.append(starts, n))
    return rules.equity(np.repeat(cash, counts), np.repeat(held, counts), candles.close)
