"""Clocks and timestamp formats, in one place: the ground floor (no import from the rest of Capandex).

Capandex counts time two ways: aware ``datetime`` objects in UTC (database columns, API dates) and
integer epoch milliseconds (candle open times, exchange timestamps). The API writes instants as ISO
8601 UTC with a ``Z`` suffix (``2025-01-15T10:30:00Z``).

* :func:`utcnow` / :func:`now_ms` — the current instant, as a datetime or in epoch ms.
* :func:`epoch_ms` / :func:`from_ms` — convert between the two.
* :func:`iso_utc` — one datetime as the API writes it (seconds; ``None`` stays ``None``).
* :func:`iso_utc_array` — many epoch-ms instants at once (numpy; milliseconds only when present).

Tests that need a fixed clock patch the caller's own reference (``monkeypatch.setattr(module,
"now_ms", ...)``) or pass ``now`` explicitly, as most functions with a clock accept.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Literal, overload

if TYPE_CHECKING:  # numpy only where arrays are formatted: the API's cold start does not need it
    import numpy as np
    import numpy.typing as npt


def utcnow() -> dt.datetime:
    """The current instant as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def now_ms() -> int:
    """The current instant in epoch milliseconds."""
    return int(time.time() * 1000)


def epoch_ms(moment: dt.datetime) -> int:
    """``moment`` in epoch milliseconds (truncated; a naive datetime is taken as local time, so
    pass aware ones)."""
    return int(moment.timestamp() * 1000)


def from_ms(epoch_ms: float) -> dt.datetime:
    """The aware UTC datetime of an epoch-ms instant."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)


@overload
def iso_utc(value: dt.datetime) -> str: ...
@overload
def iso_utc(value: None) -> None: ...
@overload
def iso_utc(value: dt.datetime | None) -> str | None: ...


def iso_utc(value: dt.datetime | None) -> str | None:
    """``2025-01-15T10:30:00Z``: the API reference's timestamp format (second precision, fractions
    dropped); ``None`` (an unset column) stays ``None``."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_utc_array(epoch_ms: npt.ArrayLike) -> list[str]:
    """ISO 8601 UTC strings with a ``Z`` suffix for epoch-ms instants: second precision, unless
    any instant has milliseconds, then all get milliseconds (candle times from user CSVs may)."""
    import numpy as np

    values = np.asarray(epoch_ms, dtype=np.int64)
    unit: Literal["s", "ms"] = "s" if np.all(values % 1000 == 0) else "ms"
    moments: npt.NDArray[np.datetime64] = values.astype("datetime64[ms]")
    stamps: list[str] = np.datetime_as_string(moments, unit=unit).tolist()
    return [s + "Z" for s in stamps]
