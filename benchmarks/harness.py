"""What the benchmarks share: the repository on the import path, seeded candles, and capandex on
its embedded defaults in a throw-away data directory beside the loopback Binance.

A benchmark runs as ``.venv/bin/python benchmarks/NAME.py``, so this folder is first on its path
and ``import harness`` finds this module; importing it puts ``shared/`` (the capandex package as
the layer holds it) and the repository root (the loopback servers of ``tests/utils``) on the path.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT, ROOT / "shared"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

if TYPE_CHECKING:
    from tests.utils.binance_server import BinanceServer


def random_walk(n: int, *, step_ms: int, close_sd: float, open_sd: float, wick_sd: float,
                seed: int = 42) -> dict[str, np.ndarray]:
    """A seeded random walk of ``n`` candles ``step_ms`` apart with consistent OHLC: log-normal
    close steps (``close_sd`` per candle), each open near the previous close (``open_sd``), wicks
    beyond the body (``wick_sd``), volume uniform in [1, 100). A benchmark input, not market data."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, close_sd, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, open_sd, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, wick_sd, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, wick_sd, n)))
    return {"time": 1_600_000_000_000 + np.arange(n, dtype=np.int64) * step_ms, "open": open_, "high": high,
            "low": low, "close": close, "volume": rng.uniform(1, 100, n)}


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres", action="store_true",
                        help="a throw-away database on the local PostgreSQL (tests/utils/postgres.py); default SQLite")


@contextmanager
def embedded_defaults(*, postgres: bool = False, **env: str) -> Iterator[Path]:
    """capandex on its embedded defaults (``CAPANDEX_ENV=local``) in a throw-away data directory,
    yielded: SQLite there, or with ``postgres`` a throw-away database on the local PostgreSQL;
    warnings only in the log; ``env`` sets further variables."""
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update(CAPANDEX_ENV="local", CAPANDEX_DATA_DIR=data_dir, LOG_LEVEL="WARNING", **env)
        os.environ.pop("DATABASE_URL", None)
        if postgres:
            from tests.utils import postgres as local_postgres

            os.environ["DATABASE_URL"] = local_postgres.create_test_database(local_postgres.server_url()[0])
        yield Path(data_dir)


@contextmanager
def beside_loopback_binance(*, postgres: bool = False, **server: Any) -> Iterator[BinanceServer]:
    """:func:`embedded_defaults` with the loopback Binance (``server``: its options, such as
    ``latency_s``) as the exchange, yielded."""
    from tests.utils.binance_server import BinanceServer

    with BinanceServer(**server) as binance, \
            embedded_defaults(postgres=postgres, CAPANDEX_EXCHANGE_URLS=binance.exchange_urls_env()):
        yield binance
