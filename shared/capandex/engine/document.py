"""The flow document's model (DESIGN.md §4): the node catalogue and the validated flow's types.

The catalogue says what a document may contain: node types, indicator kinds with their
parameters (:class:`Param`: integer or real, default, bounds) and named outputs, operators, risk
kinds, sizing fields, and which handles each node's edges may use. The types are what
:func:`capandex.engine.flow.validate_flow` returns: a :class:`Flow` of :class:`Node` objects, buy
actions (:class:`BuyAction`), :class:`Risk` rules and :class:`RunSettings`. The compiler, the
simulator, the stepper, the research space and the chat prompt read them without importing the
validator.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

NUMERIC, BOOLEAN = "numeric", "boolean"
PRICE_FIELDS = ("open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4")
CONDITION_OPERATORS = (">", "<", ">=", "<=", "crosses_above", "crosses_below")
LOGIC_OPERATORS = ("and", "or", "not")
RISK_KINDS = ("stop_loss", "take_profit", "trailing_stop", "kill_switch")
TRIGGER_KINDS = ("candle_close", "webhook")
SIZING_FIELDS = ("sizePercent", "amount", "riskPercent")
#: the settings a flow document may carry (the engine's money settings, the market, live stops)
SETTINGS_FIELDS = ("exchange", "symbol", "timeframe", "initialCapital", "feeRate", "slippage", "stopsOnExchange")
#: §5's defaults (Capandex paper mode)
DEFAULT_CAPITAL, DEFAULT_FEE, DEFAULT_SLIPPAGE = 10_000.0, 0.001, 0.001
MAX_PERIOD = 100_000


@dataclass(frozen=True, slots=True)
class Param:
    """One numeric parameter: integer or real, its default (None = required) and its bounds."""

    integer: bool
    default: float | None
    low: float
    high: float = math.inf
    low_inclusive: bool = True

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None. Integers of any size are compared exactly
        (``10**400`` is out of range, not an ``OverflowError``)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.integer and value != int(value):
            return "must be a whole number"
        low_ok = value >= self.low if self.low_inclusive else value > self.low
        if not low_ok or value > self.high:
            bracket = "[" if self.low_inclusive else "("
            high = "inf" if self.high == math.inf else f"{self.high:g}"
            return f"must be in {bracket}{self.low:g}, {high}]"
        if abs(value) > sys.float_info.max:  # an integer no float can hold (the engine computes in floats)
            return "must be a finite number"
        return None


def _period(default: float | None = None, low: int = 2) -> Param:
    return Param(True, default, low, MAX_PERIOD)


@dataclass(frozen=True, slots=True)
class IndicatorKind:
    """An indicator's parameters, named outputs and whether it reads ``source`` (else OHLCV)."""

    params: dict[str, Param]
    outputs: tuple[str, ...] = ("value",)
    uses_source: bool = True


#: the indicator catalogue of DESIGN.md §4; minimum periods are TA-Lib's
INDICATORS: dict[str, IndicatorKind] = {
    "sma": IndicatorKind({"period": _period()}),
    "ema": IndicatorKind({"period": _period()}),
    "wma": IndicatorKind({"period": _period()}),
    "rsi": IndicatorKind({"period": _period(14)}),
    "macd": IndicatorKind({"fast": _period(12), "slow": _period(26), "signal": _period(9, 1)},
                          ("macd", "signal", "histogram")),
    "bollinger": IndicatorKind({"period": _period(20), "stddev": Param(False, 2, 0, 100, False)},
                               ("upper", "middle", "lower")),
    "atr": IndicatorKind({"period": _period(14, 1)}, uses_source=False),
    "stochastic": IndicatorKind({"kPeriod": _period(14, 1), "kSmooth": _period(3, 1),
                                 "dPeriod": _period(3, 1)}, ("k", "d"), uses_source=False),
    "roc": IndicatorKind({"period": _period(low=1)}),
    "highest": IndicatorKind({"period": _period()}),
    "lowest": IndicatorKind({"period": _period()}),
    "obv": IndicatorKind({}),
    "vwap": IndicatorKind({"period": _period(low=1)}),
}

RISK_PARAMS = {
    "stop_loss": Param(False, None, 0, 100, False),
    "take_profit": Param(False, None, 0, 1e6, False),
    "trailing_stop": Param(False, None, 0, 100, False),
    "kill_switch": Param(False, None, 0, 100, False),
}
SIZING_PARAMS = {
    "sizePercent": Param(False, 100, 0, 100, False),
    "amount": Param(False, None, 0, math.inf, False),
    "riskPercent": Param(False, None, 0, 100, False),
}


@dataclass(frozen=True, slots=True)
class Node:
    """A validated node: ``params`` holds every parameter with defaults filled in."""

    id: str
    type: str
    kind: str  # indicator/risk/trigger kind, condition/logic operator, price field, action side
    params: dict[str, Any]
    inputs: dict[str, list[tuple[str, str]]]  # target handle -> [(source node id, source handle)]


@dataclass(frozen=True, slots=True)
class BuyAction:
    """A buy action: its trigger inputs and how it sizes (exactly one of the three is set)."""

    node_id: str
    size_percent: float | None = None
    amount: float | None = None
    risk_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Risk:
    """The flow's risk rules in percent (None = not set)."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    kill_switch: float | None = None


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What one run of a flow trades with: capital in quote currency; fee and slippage as fractions
    (0.001 = 0.1 %). A flow document's ``settings`` parse to one;
    :func:`capandex.engine.flow.resolve_settings` lets a caller's arguments override it. (Not
    :class:`capandex.config.Settings`, the deployment's.)"""

    capital: float = DEFAULT_CAPITAL
    fee: float = DEFAULT_FEE
    slippage: float = DEFAULT_SLIPPAGE


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated flow: ``order`` lists node ids so that inputs come before their users."""

    nodes: dict[str, Node]
    order: tuple[str, ...]
    buys: tuple[BuyAction, ...]
    sells: tuple[str, ...]
    risk: Risk
    settings: RunSettings
    name: str = ""
    document: dict[str, Any] = field(default_factory=dict, repr=False)


def output_type(node: Node) -> str | None:
    """What a node's outputs carry: numbers, booleans, or nothing (actions, risk, triggers)."""
    if node.type in ("price", "constant", "indicator"):
        return NUMERIC
    if node.type in ("condition", "logic"):
        return BOOLEAN
    return None


def output_handles(node: Node) -> tuple[str, ...]:
    """The names a node's outgoing edges may use as ``sourceHandle``."""
    if node.type == "indicator":
        return INDICATORS[node.kind].outputs
    return ("value",) if output_type(node) else ()


def input_handles(node: Node) -> tuple[str, ...] | None:
    """Allowed target handles; None means any number of unnamed inputs."""
    if node.type == "condition":
        return ("a", "b")
    if node.type == "indicator":
        return ("source",) if INDICATORS[node.kind].uses_source else ()
    if node.type in ("logic", "action"):
        return None
    return ()


def data_fields(node: Node) -> tuple[str, ...]:
    """The ``data`` fields a node of this type and kind reads."""
    if node.type == "indicator":
        return ("kind", "source", *INDICATORS[node.kind].params)
    if node.type == "action":
        return ("action", *SIZING_FIELDS)
    return {"price": ("field",), "constant": ("value",), "condition": ("operator", "value"),
            "logic": ("operator",), "risk": ("kind", "percent"), "trigger": ("kind",)}[node.type]
