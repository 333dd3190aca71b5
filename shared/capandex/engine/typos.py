"""Fields of a flow document that look like a misspelt parameter (``perod``, ``sizePercnt``).

A node's ``data`` and the flow's ``settings`` may carry fields the engine does not read — the
editor's ``label``, a note, settings a newer dashboard adds — so unknown fields are not errors in
themselves. But a field that is *almost* a parameter is a mistake that changes the result without
a word: ``{"action": "buy", "sizePercnt": 10}`` would buy with 100 % of equity, ``{"kind":
"stop_loss", "percnt": 5}`` keep the default… So validation refuses a field that is not a
parameter of its node but is close to one (:data:`CUTOFF` similarity, case ignored) or is a name
traders commonly use for one (:data:`ALIASES`), and says which parameter was meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

#: the similarity (difflib's ratio, case ignored) from which an unknown field counts as a typo:
#: ``perod``/``period`` is 0.91, ``percnt``/``percent`` 0.92, ``label``/``value`` 0.4
CUTOFF = 0.8

#: other platforms' and the CLI's names for a parameter (TradingView's ``length``, ``--capital``…)
ALIASES = {
    "length": "period", "len": "period", "size": "sizePercent", "percentage": "percent",
    "std": "stddev", "dev": "stddev", "deviation": "stddev",
    "fastPeriod": "fast", "slowPeriod": "slow", "signalPeriod": "signal",
    "capital": "initialCapital", "fee": "feeRate", "fees": "feeRate", "commission": "feeRate",
}


def misspelt_fields(data: Mapping[str, Any], known: Collection[str]) -> Iterator[tuple[str, str]]:
    """``(field, the known field it was probably meant to be)`` for each field of ``data`` that is
    not in ``known`` but looks like one of them."""
    by_lower = {name.lower(): name for name in known}
    for given in data:
        if not isinstance(given, str) or given in known:
            continue
        meant = ALIASES.get(given) if ALIASES.get(given) in known else None
        if meant is None:
            close = difflib.get_close_matches(given.lower(), by_lower, n=1, cutoff=CUTOFF)
            meant = by_lower[close[0]] if close else None
        if meant is not None:
            yield given, meant
