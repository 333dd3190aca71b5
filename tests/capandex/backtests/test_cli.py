"""``capandex backtest FLOW.json --exchange …``: the API's candles, date rules and metrics, with a
progress bar on stderr (the loopback Binance behind the real ccxt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capandex.cli import main
from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer

RANGE = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h",
         "--start", "2024-01-01", "--end", "2024-02-01T00:00:00Z"]


@pytest.fixture
def flow_file(tmp_path, binance_env: BinanceServer, monkeypatch) -> str:
    from capandex.exchanges import retry

    monkeypatch.setattr(retry, "sleep", lambda _s: None)
    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"name": "SMA", **sma_cross_flow(5, 20)}))
    return str(path)


def test_same_metrics_as_the_api_and_a_progress_bar(api, flow_file: str, capsys) -> None:
    user = api.as_user()
    flow = user.post("/api/flows", json=json.loads(Path(flow_file).read_text()))
    assert flow.status_code == 201, flow.text
    response = user.post("/api/engine/backtest", json={
        "flowId": flow.json()["id"], "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
        "startDate": "2024-01-01", "endDate": "2024-02-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    capsys.readouterr()
    assert main(["backtest", flow_file, *RANGE, "--json"]) == 0
    out, err = capsys.readouterr()
    cli = json.loads(out)
    assert cli["metrics"] == response.json()["metrics"] and cli["metrics"]["totalTrades"] > 0
    assert len(cli["equityCurve"]) == len(response.json()["equityCurve"]) == 31 * 24
    # capandex.marketdata's bar (one summary line when stderr is not a terminal), not a bare counter
    assert err.startswith("BTC/USDT 1h [" + "#" * 30 + "] 100.0% 744/744 in ")
    assert "downloading candles" not in err


@pytest.mark.parametrize(("dates", "needle"), [
    (["--start", "2024-03-01", "--end", "2024-02-01"], "--start must be before --end"),
    (["--start", "2024-01-01", "--end", "2999-01-01"], "--end is in the future"),
    (["--start", "2024-13-01", "--end", "2024-02-01"], "--start not an ISO 8601 date"),
    (["--start", "1900-01-01", "--end", "1900-02-01"], "--start must not be before 1970-01-01"),
])
def test_dates_follow_the_api_rules(flow_file: str, binance_env: BinanceServer, capsys, dates, needle) -> None:
    assert main(["backtest", flow_file, *RANGE[:6], *dates]) == 2
    data, err = capsys.readouterr().err.split("\n", 1)
    assert data.startswith("data: ")  # where the candles would be cached
    assert err.startswith("error: Invalid backtest range") and needle in err, err
    assert binance_env.count("/api/v3/klines") == 0  # refused before any download


@pytest.mark.parametrize(("argv", "said"), [
    (["backtest", "flow.json", "--exchnage", "binance"], "capandex backtest: error: unknown option --exchnage; "
                                                          "did you mean --exchange?"),
    (["candles", "import", "a.csv", "--symbl", "BTC/USDT"], "capandex candles import: error: unknown option "
                                                             "--symbl; did you mean --symbol?"),
    (["optimize", "flow.json", "--candles", "c.csv", "--parm=fast.period=5"], "did you mean --param?"),
])
def test_a_mistyped_option_is_named_before_any_missing_one(capsys, argv, said) -> None:
    """argparse would first say "--exchange is required" and never name the typo behind it."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and said in capsys.readouterr().err


def test_abbreviated_options_still_work(flow_file: str, capsys) -> None:
    assert main(["backtest", flow_file, "--exch", "binance", "--sym", "BTC/USDT", *RANGE[4:], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["totalTrades"] > 0


def test_an_unreachable_exchange_exits_1_without_a_finished_bar(flow_file: str, configure, capsys) -> None:
    """Not the command's fault: exit 1 (retry later), not 2 (fix the command); and no bar at 100 %."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    configure(CAPANDEX_EXCHANGE_URLS=json.dumps({"binance": f"http://127.0.0.1:{port}"}))
    assert main(["backtest", flow_file, *RANGE]) == 1
    err = capsys.readouterr().err
    assert "error: binance could not be reached or timed out" in err and "100.0%" not in err
