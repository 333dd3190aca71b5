"""How many trailing candles the live engine evaluates a flow over: bounded, whatever the flow.

:attr:`capandex.engine.CompiledFlow.history` is the window after which a recursive indicator
(EMA, RSI, ATR, MACD) agrees with a full-history evaluation to 1e-12, about 13.8 × its period: an
``ema(100000)`` asks for 1.48 M candles on every tick (before 1970 on 1h candles). The live engine
takes instead

    window = min(CompiledFlow.history, max(FLOOR, WARMUPS × (warm-up + 1)))

— every flow with a warm-up under 2,000 candles keeps its exact 1e-12 window (the floor covers
it); a longer one gets five warm-ups, where a seed's weight has decayed below e⁻⁸ ≈ 3e-4 (for an
EMA, ``(1 - 2/(P+1))^(4P)``), so decisions can differ from a backtest's only near a tie.

Two hard limits make every tick's cost bounded, whatever the flow (a tick runs every candle, on a
512 MB worker that handles ten executions per batch — one oversized flow would take the others of
its batch down with it):

* the window itself is at most :data:`MAX_WINDOW` candles (so is every fetch for it) — a chain of
  EMAs whose warm-ups add up to 497,502 candles would otherwise ask for five times that, 2.5 M;
* the flow's evaluation over the window, by the engine's cost model (nodes × candles,
  :mod:`capandex.engine.cost`), needs at most :data:`TICK_MAX_BYTES` and :data:`TICK_MAX_SECONDS`
  — 249 EMAs of period 90,000 over their 450,000-candle window took 1.1 GB and 5 s per tick.

A flow over either limit cannot run live or on paper: starting it is a 422 naming its nodes, and a
tick refuses it for good (an execution started before the limit existed fails, it never runs).

**The first ticks fill the store** (:data:`FILL_SECONDS`). A window the candle store does not hold
yet is downloaded from the exchange: 500,000 1m candles took 13 s at Binance's pace (509 pages),
and OKX serves 100 candles a page. One tick requests no page after :data:`FILL_SECONDS` (one
page at most goes on past it); what the pages brought stays in the store, and the tick ends as
"candles not ready" (not a failure: the scheduler's next pass, a minute on, goes on with the
download) until the window is complete — so one new execution never holds up the others of its SQS
batch, nor runs its worker into the Lambda timeout. Meanwhile it trades nothing; once the window is
stored it catches up in order, and the buys whose signals went stale meanwhile are not placed
(:mod:`capandex.live.entries`). Refusing such flows at start would refuse ones that run cheaply
once stored (a warm tick reads them in 0.28 s); downloading them at start cannot fit a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from capandex.errors import ValidationFailed, field_problem

if TYPE_CHECKING:
    from capandex.engine import CompiledFlow

#: every flow may keep this many candles (the exact window of any warm-up under 2,000)
FLOOR = 10_000
#: warm-ups kept beyond the floor
WARMUPS = 5
#: the most candles one tick evaluates (and fetches) for one execution
MAX_WINDOW = 500_000
#: the most memory one tick's evaluation may need, by the cost model (issue 11's ema(100000) +
#: bollinger(2000) needs 93 MiB; the tick worker has 512 MB for the runtime, candles and the rest)
TICK_MAX_BYTES = 160 * 2**20
#: the most engine time one tick's evaluation may take, by the cost model (that flow: 0.14 s)
TICK_MAX_SECONDS = 0.5
#: seconds after which one tick requests no more pages of its window (what it fetched is stored):
#: the tick worker gives each SQS record at least 35 s
FILL_SECONDS = 10.0


def history_window(compiled: CompiledFlow) -> int:
    """The trailing candles a tick passes the stepper (see the module docstring).

    Raises:
        ValidationFailed: the flow uses OBV (a running total since the first candle, which no
            trailing window reproduces), its warm-up needs a window of more than
            :data:`MAX_WINDOW` candles, or its evaluation over the window exceeds the tick's
            budget (:data:`TICK_MAX_BYTES`, :data:`TICK_MAX_SECONDS`).
    """
    if compiled.history is None:
        raise ValidationFailed("The flow uses OBV, a running total since the first candle, which cannot be "
                               "evaluated candle by candle; paper and live executions cannot run it.",
                               details=[field_problem("nodes", "OBV cannot run in paper or live mode")])
    needed = compiled.warmup + 1
    window = min(compiled.history, max(FLOOR, WARMUPS * needed))
    if needed > MAX_WINDOW or window > MAX_WINDOW:
        what = (f"needs {needed:,} candles before its first signal" if needed > MAX_WINDOW
                else f"needs {WARMUPS} warm-ups of {needed:,} candles ({window:,}) to agree with a backtest")
        raise ValidationFailed(
            f"The flow {what}; paper and live executions keep at most {MAX_WINDOW:,}. Use shorter indicator "
            "periods or fewer chained indicators.",
            details=[field_problem("nodes", f"the indicators' warm-up exceeds {MAX_WINDOW:,} candles"
                                   if needed > MAX_WINDOW else
                                   f"the indicators' warm-ups need a window over {MAX_WINDOW:,} candles")])
    _check_tick_cost(compiled, window)
    return window


def _check_tick_cost(compiled: CompiledFlow, window: int) -> None:
    from capandex.engine import cost

    work = cost.estimate(compiled, window)
    if work.bytes <= TICK_MAX_BYTES and work.seconds <= TICK_MAX_SECONDS:
        return
    why = (f"{work.nodes} computing nodes over a window of {window:,} candles need about {work.bytes / 2**20:,.0f} "
           f"MiB and {work.seconds:.1f} s per tick; a tick may use {TICK_MAX_BYTES / 2**20:,.0f} MiB and "
           f"{TICK_MAX_SECONDS} s")
    raise ValidationFailed(f"The flow is too heavy to run live or on paper: {why}. Use fewer nodes or shorter "
                           "indicator periods.", details=[field_problem("nodes", why)])
