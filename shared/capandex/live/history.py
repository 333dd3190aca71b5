"""How many trailing candles the live engine evaluates a flow over: bounded, whatever the flow.

:attr:`capandex.engine.CompiledFlow.history` is the window after which a recursive indicator
(EMA, RSI, ATR, MACD) agrees with a full-history evaluation to 1e-12, about 13.8 × its period: an
``ema(100000)`` asks for 1.48 M candles on every tick (before 1970 on 1h candles). The live engine
takes instead

    window = min(CompiledFlow.history, max(FLOOR, WARMUPS × (warm-up + 1)))

— every flow with a warm-up under 2,000 candles keeps its exact 1e-12 window (the floor covers
it); a longer one gets five warm-ups, where a seed's weight has decayed below e⁻⁸ ≈ 3e-4 (for an
EMA, ``(1 - 2/(P+1))^(4P)``), so decisions can differ from a backtest's only near a tie. A flow
whose warm-up alone exceeds :data:`MAX_WINDOW` candles cannot run live or on paper: starting it is
a 422 naming its nodes, and a tick refuses it for good.
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


def history_window(compiled: CompiledFlow) -> int:
    """The trailing candles a tick passes the stepper (see the module docstring).

    Raises:
        ValidationFailed: the flow uses OBV (a running total since the first candle, which no
            trailing window reproduces), or its warm-up needs more than :data:`MAX_WINDOW` candles.
    """
    if compiled.history is None:
        raise ValidationFailed("The flow uses OBV, a running total since the first candle, which cannot be "
                               "evaluated candle by candle; paper and live executions cannot run it.",
                               details=[field_problem("nodes", "OBV cannot run in paper or live mode")])
    needed = compiled.warmup + 1
    if needed > MAX_WINDOW:
        raise ValidationFailed(
            f"The flow needs {needed:,} candles before its first signal; paper and live executions keep at most "
            f"{MAX_WINDOW:,}. Use shorter indicator periods.",
            details=[field_problem("nodes", f"the indicators' warm-up exceeds {MAX_WINDOW:,} candles")])
    return min(compiled.history, max(FLOOR, WARMUPS * needed))
