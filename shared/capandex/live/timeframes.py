"""Candle timeframes as milliseconds, and which candle has closed at a given time."""

from __future__ import annotations

import re

from capandex.errors import ValidationFailed, field_problem

_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^([1-9][0-9]{0,2})([mhdw])$")


def timeframe_ms(timeframe: str, *, field: str = "settings.timeframe") -> int:
    """``"15m"`` → 900000. Minutes, hours, days and weeks (weeks are aligned to the epoch,
    i.e. Thursdays; exchanges start weeks on Monday, so prefer ``1d`` and below for live flows).

    Raises:
        ValidationFailed: not a ``<n><m|h|d|w>`` timeframe.
    """
    match = _PATTERN.match(timeframe or "")
    if match is None:
        raise ValidationFailed(f"Unsupported timeframe {timeframe!r}.",
                               details=[field_problem(field, "must look like 1m, 5m, 15m, 1h, 4h or 1d")])
    return int(match.group(1)) * _UNITS[match.group(2)]


def last_closed_open(now_ms: int, tf_ms: int) -> int:
    """Open time (epoch ms) of the newest candle that has fully closed at ``now_ms``.

    A candle opening at ``o`` closes at ``o + tf``; at exactly ``o + tf`` it counts as closed.
    """
    return (now_ms // tf_ms) * tf_ms - tf_ms
