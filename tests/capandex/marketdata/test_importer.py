"""``capandex candles import``: Binance kline archives and candle CSVs into the chunk store, every
problem reported with its line, and imported ranges served without the exchange."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from capandex.errors import ValidationFailed
from capandex.marketdata import LocalStore, fetch_candles
from capandex.marketdata.importer import import_files, list_series, read_files

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NOW = T0 + 400 * 24 * HOUR


def kline(open_ms: int, price: float, *, step: int = HOUR, unit: int = 1, close_ms: int | None = None) -> str:
    """One row as Binance's public data writes it (12 columns; times in ms, or µs with unit=1000)."""
    close = (open_ms + step) * unit - 1 if close_ms is None else close_ms
    return (f"{open_ms * unit},{price:.8f},{price * 1.01:.8f},{price * 0.99:.8f},{price * 1.005:.8f},12.5,"
            f"{close},1000.0,42,6.0,500.0,0")


def write_zip(path: Path, member: str, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, "\n".join(lines) + "\n")
    return path


class NoExchange:
    """A client that fails the test if the exchange is asked for anything but static facts."""

    def max_page_size(self, timeframe: str) -> int:
        return 1000

    def __getattr__(self, name: str):
        raise AssertionError(f"the exchange was asked: {name}")


def test_binance_archives_in_ms_and_us_import_and_serve_offline(tmp_path: Path) -> None:
    """A monthly ZIP in ms (before 2025) and a daily CSV in µs (2025 on) join into one series that
    a backtest reads without the exchange."""
    store = LocalStore(tmp_path / "store")
    december = [kline(T0 - (24 - i) * HOUR, 100 + i) for i in range(24)]  # 2023-12-31, ms
    january = [kline(T0 + i * HOUR, 200 + i, unit=1000) for i in range(48)]  # µs, as files from 2025 on
    result = import_files([write_zip(tmp_path / "BTCUSDT-1h-2023-12.zip", "BTCUSDT-1h-2023-12.csv", december),
                           _write(tmp_path / "BTCUSDT-1h-2024-01.csv", january)],
                          "binance", "BTC/USDT", "1h", store=store, now=NOW)
    assert (result.rows, result.first_ms, result.end_ms, result.gaps) == (72, T0 - 24 * HOUR, T0 + 48 * HOUR, ())

    candles = fetch_candles("binance", "BTC/USDT", "1h", T0 - 24 * HOUR, T0 + 48 * HOUR, store=store,
                            client=NoExchange(), now=NOW)
    assert candles.pages_fetched == 0 and len(candles) == 72 and candles.gaps == ()
    assert candles.time[0] == T0 - 24 * HOUR and candles.open[24] == 200.0
    # a range reaching before the import is not covered: the exchange would be asked
    with pytest.raises(AssertionError, match="the exchange was asked"):
        fetch_candles("binance", "BTC/USDT", "1h", T0 - 48 * HOUR, T0, store=store, client=NoExchange(), now=NOW)


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    rows = [kline(T0 + i * HOUR, 100 + i) for i in range(6)]
    rows[1] = kline(T0 + HOUR, 100, step=60_000)  # a 1m file's close time
    rows[2] = rows[2].replace("102.00000000", "-1", 1)  # open not positive
    rows[3] = kline(T0 + 2 * HOUR, 103)  # the time of line 3 again
    rows[4] = kline(T0 + HOUR + 60_000, 104, close_ms=T0 + 2 * HOUR + 59_999)  # off the 1h grid
    rows.append("1704085200000,1,2,3")  # too few columns
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(ValidationFailed) as caught:
        read_files([path], "1h", now=NOW)
    problems = [(d["field"].rsplit(":", 1)[1], d["message"]) for d in caught.value.details]
    assert problems == [
        ("2", "close time says a 1m candle, not 1h (a 1m file? then --timeframe 1m)"),
        ("7", "expected 12 columns, got 4"),
        ("3", "a price is not positive"),
        ("3", "low is above open or close"),
        ("5", "open time is not on the 1h grid (wrong --timeframe?)"),
        ("5", "open time is earlier than line 4 (rows must be sorted by time)"),
        ("4", "open time duplicates " + f"{path}:3"),
    ]
    assert "7 problem(s)" in caught.value.message


def test_a_candle_csv_with_gaps_imports_and_lists(tmp_path: Path) -> None:
    """The backtest CLI's CSV format; a missing hour is a gap, reported and listed, not an error."""
    store = LocalStore(tmp_path / "store")
    lines = ["time,open,high,low,close,volume"] + [
        f"2024-01-01T{h:02d}:00:00Z,{100 + h},{102 + h},{99 + h},{101 + h},5" for h in range(10) if h != 4]
    result = import_files([_write(tmp_path / "c.csv", lines)], "kraken", "EUR/USD", "1h", store=store, now=NOW)
    assert [(g.start_ms, g.missing) for g in result.gaps] == [(T0 + 4 * HOUR, 1)]
    listed = [s.to_dict() for s in list_series(store)]
    assert listed == [{"exchange": "kraken", "symbol": "EUR/USD", "timeframe": "1h", "candles": 9,
                       "first": "2024-01-01T00:00:00Z", "last": "2024-01-01T09:00:00Z",
                       "gaps": [{"start": "2024-01-01T04:00:00Z", "end": "2024-01-01T05:00:00Z", "missing": 1}],
                       "missing": 1}]


def test_an_import_joins_what_the_store_had_and_wins_inside_its_span(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    first = [kline(T0 + i * HOUR, 100) for i in range(10)]
    import_files([_write(tmp_path / "a.csv", first)], "binance", "BTC/USDT", "1h", store=store, now=NOW)
    second = [kline(T0 + i * HOUR, 300) for i in range(5, 15)]
    import_files([_write(tmp_path / "b.csv", second)], "binance", "BTC/USDT", "1h", store=store, now=NOW)
    candles = fetch_candles("binance", "BTC/USDT", "1h", T0, T0 + 15 * HOUR, store=store, client=NoExchange(), now=NOW)
    assert list(candles.open) == [100.0] * 5 + [300.0] * 10


def test_the_list_counts_the_hole_between_two_imports_as_a_gap(tmp_path: Path) -> None:
    """Two imports a month apart: a backtest of the month between would go to the exchange, so
    the list must not say "gaps: none"."""
    store = LocalStore(tmp_path / "store")
    for name, start in (("a.csv", T0), ("b.csv", T0 + 31 * 24 * HOUR)):
        import_files([_write(tmp_path / name, [kline(start + i * HOUR, 100) for i in range(24)])],
                     "binance", "BTC/USDT", "1h", store=store, now=NOW)
    (listed,) = [s.to_dict() for s in list_series(store)]  # the first import is kept
    assert (listed["candles"], listed["first"], listed["last"]) == (48, "2024-01-01T00:00:00Z", "2024-02-01T23:00:00Z")
    assert listed["gaps"] == [{"start": "2024-01-02T00:00:00Z", "end": "2024-02-01T00:00:00Z", "missing": 30 * 24}]


def test_unclosed_candles_and_bad_symbols_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    path = _write(tmp_path / "late.csv", [kline(NOW - HOUR, 1.0)])  # closes at NOW
    with pytest.raises(ValidationFailed) as caught:
        import_files([path], "binance", "BTC/USDT", "1h", store=store, now=NOW)
    assert caught.value.details[0]["message"] == "the candle has not closed yet"
    with pytest.raises(ValidationFailed, match="BTC/USDT"):
        import_files([path], "binance", "BTCUSDT", "1h", store=store, now=NOW)
    assert not (tmp_path / "store").exists()  # nothing stored


def test_the_cli_imports_lists_and_reports_errors_as_json(tmp_path: Path, configure, capsys) -> None:
    from capandex.cli import main

    configure()
    good = _write(tmp_path / "good.csv", [kline(T0 + i * HOUR, 100 + i) for i in range(30)])
    assert main(["candles", "import", str(good), "--exchange", "binance", "--symbol", "BTC/USDT",
                 "--timeframe", "1h"]) == 0
    out = capsys.readouterr()
    assert "imported 30 1h candles of binance BTC/USDT: 2024-01-01T00:00:00Z to 2024-01-02T05:00:00Z" in out.out
    assert out.err.startswith("data: ")
    assert main(["candles", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series"][0]["candles"] == 30

    bad = _write(tmp_path / "bad.csv", [kline(T0, 1.0, step=60_000), "x,1,2"])
    assert main(["candles", "import", str(bad), "--exchange", "binance", "--symbol", "BTC/USDT",
                 "--timeframe", "1h", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "validation_error" and len(error["details"]) == 2
    assert main(["candles", "import", str(bad), "--exchange", "binance", "--symbol", "BTC/USDT",
                 "--timeframe", "1h"]) == 2
    err = capsys.readouterr().err.splitlines()[1:]  # after the data directory
    assert err[0].startswith("error: The candle files were not imported: 2 problem(s)")
    assert err[1:] == [f"  {bad}:1: close time says a 1m candle, not 1h (a 1m file? then --timeframe 1m)",
                       f"  {bad}:2: expected 12 columns, got 3"]

    later = _write(tmp_path / "later.csv", [kline(T0 + (48 + i) * HOUR, 100) for i in range(24)])
    assert main(["candles", "import", str(later), "--exchange", "binance", "--symbol", "BTC/USDT",
                 "--timeframe", "1h"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "kept the candles stored before: the 18 between them and these (2024-01-02T06:00:00Z to "
        "2024-01-03T00:00:00Z) count as a gap until you import them")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_zip_members_are_named_in_errors(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "x.zip", "X-1h.csv", [kline(T0, 1.0), "nope"])
    with pytest.raises(ValidationFailed) as caught:
        read_files([archive], "1h", now=NOW)
    assert caught.value.details[0]["field"] == f"{archive}:X-1h.csv:2"
