"""A trader's whole journey through the product, over real HTTP against a real ``capandex serve``.

One process per role, as a user runs them: ``capandex serve`` (SQLite and the local vault in a
temporary data dir), ``capandex token`` for the ``@supabase/ssr`` cookie and ``capandex tick --at``
for the live engine's passes; at the network edge the loopback Binance (public, signed account
endpoints) and the loopback Anthropic API (streamed Messages and Models on one base URL, as
api.anthropic.com serves both), so the real ccxt and anthropic clients run inside the server.

The steps share one server and build on each other (the flow that is backtested is the one that
runs on paper and that the assistant discusses), so they are one test with a helper per step;
every id collected on the way is then probed as a second user, and the server's own output is
searched for every secret the journey used.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from capandex.engine import backtest
from capandex.engine.examples import sma_cross
from capandex.live.timeframes import last_closed_open
from capandex.marketdata.chunks import SETTLE_MS
from tests.utils import secret_guard
from tests.utils.anthropic_models import AnthropicModelsServer
from tests.utils.anthropic_server import AnthropicServer, text_reply
from tests.utils.binance_server import BinanceServer
from tests.utils.binance_signed import SignedBinance
from tests.utils.chat import sse_payloads
from tests.utils.http_server import free_port
from tests.utils.serve import wait_until_serving

HOUR_MS = 3_600_000
SLOW = 30  # the slow SMA's period
#: candles the paper execution replays (five days: enough for the SMA cross to close trades)
PAPER_CANDLES = 120
SETTINGS = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
            "initialCapital": 10000, "feeRate": 0.001, "slippage": 0.001}
#: DESIGN.md §4's flow: SMA 10/30 cross with a 2 % stop-loss
FLOW = sma_cross(10, SLOW, ("stop_loss", 2), name="BTC SMA cross", settings=SETTINGS, sizePercent=100)
BACKTEST_RANGE = ("2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z")
#: the account behind the exchange key: 5,234.50 USDT (free + locked) and 1 BTC (not a stablecoin)
BALANCES = {"USDT": (5000.0, 234.5), "BTC": (1.0, 0.0)}
AI_KEY = "sk-ant-api03-journey-" + uuid.uuid4().hex
REFERENCE_KEYS = {
    "ticker": {"symbol", "last", "bid", "ask", "volume", "change24h", "timestamp"},
    "exchange": {"id", "name", "ccxt_id", "is_active", "sort_order"},
    "metrics": {"pnl", "pnlPercent", "winRate", "maxDrawdown", "maxDrawdownPercent", "sharpeRatio",
                "profitFactor", "totalTrades", "winningTrades", "losingTrades"},
    "status": {"executionId", "status", "startedAt", "currentTick", "pnl", "pnlPercent", "openPositions",
               "totalTrades"},
    "flow_row": {"id", "name", "status", "symbol", "exchange", "pnl", "pnlPct", "tradeCount", "winRate",
                 "errorCount", "openPositions", "executionId"},
    "aggregate": {"totalPnl", "totalPnlPct", "totalTrades", "runningFlows", "errorFlows", "totalOpenPositions"},
    "performance": {"totalTrades", "winRate", "pnl", "pnlPercent", "maxDrawdown", "maxDrawdownPercent",
                    "sharpeRatio", "profitFactor", "equityCurve"},
    "notification": {"id", "type", "title", "message", "read_at", "action_url", "created_at"},
    "message": {"id", "role", "content", "created_at"},
}


class Anthropic(AnthropicServer):
    """The loopback Messages API plus ``GET /v1/models`` (what key validation calls) on one port."""

    def __init__(self, api_keys: set[str]) -> None:
        # only its route handler is used; the socket it binds is closed at once
        self.models = AnthropicModelsServer(api_keys)
        self.models.httpd.server_close()
        super().__init__(api_keys=api_keys)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        models = self.models

        class Handler(super()._handler_class()):
            def do_GET(self) -> None:
                status, body, headers = models._models(self) if self.path.startswith("/v1/models") \
                    else (404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}, {})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    data_dir: Path
    log: Path
    binance: BinanceServer
    signed: SignedBinance
    anthropic: Anthropic
    secrets: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("journey")
    log = data_dir / "serve.log"
    with BinanceServer() as binance, Anthropic({AI_KEY}) as anthropic:
        env = {**os.environ, "CAPANDEX_ENV": "local", "CAPANDEX_DATA_DIR": str(data_dir),
               "CAPANDEX_EXCHANGE_URLS": binance.exchange_urls_env(), "CAPANDEX_EXCHANGE_TIMEOUT_MS": "5000",
               "ANTHROPIC_BASE_URL": anthropic.url, "ANTHROPIC_MAX_RETRIES": "0",
               "PYTHONUNBUFFERED": "1"}  # every line reaches the captured output at once
        for name in ("DATABASE_URL", "CAPANDEX_EXCHANGE_SANDBOX", "SUPABASE_URL", "SUPABASE_JWT_SECRET"):
            env.pop(name, None)
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "capandex.cli", "serve", "--port", str(port),
                                        "--no-ticks"], env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(url, process, log)
            yield Stack(url, env, data_dir, log, binance, SignedBinance(binance), anthropic)
        finally:
            process.terminate()
            process.wait(timeout=10)


def cli(stack: Stack, *args: str) -> str:
    """Run ``capandex ARGS`` with the server's environment; its stdout (it must exit 0)."""
    done = subprocess.run([sys.executable, "-m", "capandex.cli", *args], env=stack.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def sign_in(stack: Stack) -> dict[str, str]:
    """``capandex token`` → the Cookie header a browser sends (its JWT joins ``stack.secrets``)."""
    out = cli(stack, "token", "--user", str(uuid.uuid4()))
    token = re.search(r"^token:\s+(\S+)$", out, re.M).group(1)
    cookie = re.search(r"^cookie: Cookie: (\S+)$", out, re.M).group(1)
    assert cookie.startswith("sb-127-auth-token=base64-")
    stack.secrets.append(token)
    return {"Cookie": cookie}


def iso_ms(value: str) -> int:
    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def ms_iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def loopback_candles(binance: BinanceServer, start_ms: int, end_ms: int) -> dict[str, Any]:
    """BTC/USDT 1h candles opening in ``[start_ms, end_ms)`` from the loopback's own generator, as
    they reach the server (prices cross the wire with 8 decimals)."""
    rows = binance.expected_klines("BTCUSDT", "1h", start_ms, end_ms)
    return {"time": rows[:, 0].astype("int64"),
            **{name: [float(f"{v:.8f}") for v in rows[:, i + 1]]
               for i, name in enumerate(("open", "high", "low", "close", "volume"))}}


# -- the steps -----------------------------------------------------------------------------------
def browse_market(http: httpx.Client) -> None:
    exchanges = http.get("/api/exchanges")
    assert exchanges.status_code == 200, exchanges.text
    binance = next(e for e in exchanges.json()["exchanges"] if e["id"] == "binance")
    assert set(binance) >= REFERENCE_KEYS["exchange"]
    assert binance["ccxt_id"] == "binance" and binance["is_active"] is True and binance["name"] == "Binance"

    symbols = http.get("/api/market", params={"exchange": "binance", "action": "symbols"})
    assert symbols.status_code == 200, symbols.text
    # the loopback lists these as TRADING; LUNA/USDT is halted (BREAK) and must not be offered
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "ETH/BTC"} <= set(symbols.json()["symbols"])
    assert "LUNA/USDT" not in symbols.json()["symbols"]

    ticker = http.get("/api/market", params={"exchange": "binance", "symbol": "BTC/USDT"})
    assert ticker.status_code == 200, ticker.text
    t = ticker.json()
    assert set(t) >= REFERENCE_KEYS["ticker"] and t["symbol"] == "BTC/USDT"
    # the loopback quotes bid/ask 1 bp around the last price and a fixed 24 h volume
    assert t["bid"] == pytest.approx(t["last"] * 0.9999, rel=1e-8)
    assert t["ask"] == pytest.approx(t["last"] * 1.0001, rel=1e-8)
    assert t["volume"] == 15234.56 and 30_000 < t["last"] < 50_000
    assert abs(iso_ms(t["timestamp"]) - time.time() * 1000) < 120_000


def create_flow(http: httpx.Client) -> tuple[str, str]:
    created = http.post("/api/flows", json=FLOW)
    assert created.status_code == 201, created.text
    flow_id = created.json()["id"]
    assert http.get(f"/api/flows/{flow_id}").json()["name"] == FLOW["name"]
    version = http.post(f"/api/flows/{flow_id}/versions", json={"description": "SMA 10/30 + 2 % stop"})
    assert version.status_code == 201, version.text
    v = version.json()
    assert v["flow_id"] == flow_id and v["version"] == 1 and v["change_description"] == "SMA 10/30 + 2 % stop"
    listed = http.get(f"/api/flows/{flow_id}/versions").json()["versions"]
    assert [(x["id"], x["node_count"], x["edge_count"]) for x in listed] == [(v["id"], 7, 6)]
    return flow_id, v["id"]


def run_backtest(http: httpx.Client, binance: BinanceServer, flow_id: str) -> str:
    start, end = BACKTEST_RANGE
    response = http.post("/api/engine/backtest", json={
        "flowId": flow_id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
        "startDate": start, "endDate": end})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["backtestId"].startswith("bt_") and result["status"] == "completed"
    assert set(result["metrics"]) >= REFERENCE_KEYS["metrics"]

    # the library, in this process, on the very candles the loopback served
    candles = loopback_candles(binance, iso_ms(start), iso_ms(end))
    expected = backtest(FLOW, candles)
    assert len(candles["time"]) == 14 * 24 and expected.metrics["totalTrades"] >= 3
    assert result["metrics"] == pytest.approx(expected.metrics, rel=1e-9, abs=1e-9)
    assert [p["timestamp"] for p in result["equityCurve"]] == [ms_iso(int(t)) for t in candles["time"]]
    assert [p["equity"] for p in result["equityCurve"]] == pytest.approx(list(expected.equity), rel=1e-9)
    assert len(result["trades"]) == expected.metrics["totalTrades"]
    for got, want in zip(result["trades"], expected.trades, strict=True):
        assert (got["entryTime"], got["exitTime"], got["exitReason"]) == \
            (want["entryTime"], want["exitTime"], want["exitReason"])
        assert got["pnl"] == pytest.approx(want["pnl"], rel=1e-9, abs=1e-9)
    assert http.get(f"/api/engine/backtest/{result['backtestId']}").json() == result
    return result["backtestId"]


def connect_exchange(http: httpx.Client, stack: Stack) -> str:
    creds = {"apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    stack.secrets += creds.values()
    secret_guard.register(*creds.values())
    stack.signed.add_account(creds["apiKey"], creds["secret"], BALANCES)
    saved = http.post("/api/exchange-keys", json={"exchange": "binance", "label": "Main Account", **creds})
    assert saved.status_code == 201, saved.text
    key_id = saved.json()["id"]
    assert set(saved.json()) == {"id", "exchange", "label", "createdAt"}

    validated = http.post("/api/exchange-keys/validate", json={"id": key_id})
    assert validated.status_code == 200, validated.text
    v = validated.json()
    assert v["valid"] is True and v["permissions"] == ["read", "trade"] and v["account"] == {"balance": 5234.5}
    # the stored secret, decrypted by the server, signed the exchange's account request
    assert ("/api/v3/account", creds["apiKey"]) in stack.signed.verified and not stack.signed.rejected
    keys = http.get("/api/exchange-keys").json()["keys"]
    assert [(k["id"], k["label"], k["isValid"]) for k in keys] == [(key_id, "Main Account", True)]
    assert creds["secret"] not in json.dumps(keys) and creds["apiKey"] not in json.dumps(keys)

    balance = http.get("/api/dashboard/balance")
    assert balance.status_code == 200, balance.text
    b = balance.json()
    assert b["totalUsd"] == 5234.5
    assert [(e["exchange"], e["label"], e["balanceUsd"]) for e in b["exchanges"]] == \
        [("binance", "Main Account", 5234.5)]
    return key_id


def paper_expectation(binance: BinanceServer, first_ms: int, last_ms: int) -> dict[str, Any]:
    """What a paper execution that ticks the candles ``first_ms..last_ms`` must show, from the library.

    A backtest whose candles start ``SLOW - 1`` bars before ``first_ms`` is flat with the full
    capital until ``first_ms``, the first bar where SMA(30) and its previous value both exist, i.e.
    exactly where the paper execution's first signal can fire: the two runs are the same run.
    """
    candles = loopback_candles(binance, first_ms - (SLOW - 1) * HOUR_MS, last_ms + HOUR_MS)
    result = backtest(FLOW, candles)
    closed = [t for t in result.trades if t["exitReason"] != "end_of_data"]
    pnl = sum(t["pnl"] for t in closed)
    held = [t for t in result.trades if t["exitReason"] == "end_of_data"]
    for t in held:  # the paper position is marked at the last close, without the exit's costs
        pnl += t["units"] * (candles["close"][-1] - t["entryPrice"] * (1 + SETTINGS["feeRate"]))
    return {"trades": len(closed), "open": len(held), "realized": sum(t["pnl"] for t in closed), "pnl": pnl,
            "winRate": sum(t["pnl"] > 0 for t in closed) / len(closed) if closed else 0.0}


def trade_on_paper(http: httpx.Client, stack: Stack, flow_id: str) -> str:
    # replay the last five days (replayFrom: paper only): the first pass catches up 118 candles,
    # then one candle per pass
    newest = last_closed_open(int(time.time() * 1000), HOUR_MS) - HOUR_MS  # closed over an hour ago
    replay_from = ms_iso(newest - (PAPER_CANDLES - 1) * HOUR_MS)
    started = http.post("/api/engine/start", json={"flowId": flow_id, "mode": "paper", "replayFrom": replay_from})
    assert started.status_code == 200, started.text
    execution_id = started.json()["executionId"]
    assert started.json()["status"] == "running" and started.json()["mode"] == "paper"
    status = http.get("/api/engine/status", params={"executionId": execution_id}).json()
    assert set(status) >= REFERENCE_KEYS["status"] and status["currentTick"] == 0 and status["pnl"] == 0

    for back in (2, 1, 0):
        candle = newest - back * HOUR_MS
        moment = ms_iso(candle + HOUR_MS + SETTLE_MS + 1000)  # when that candle is closed and settled
        out = cli(stack, "tick", "--at", moment)
        assert re.search(rf"^{execution_id} up to candle {ms_iso(candle)}: done, \d+ fill\(s\)$", out, re.M), out
        assert out.rstrip().endswith("1 tick(s)")
        status = http.get("/api/engine/status", params={"executionId": execution_id}).json()
        assert (status["currentTick"], status["status"], status["errorCount"]) == \
            (PAPER_CANDLES - back, "running", 0)
    assert cli(stack, "tick", "--at", moment).strip().startswith("0 tick(s) (no running execution")  # nothing due
    # paper fills never touch the exchange's order endpoints
    assert stack.binance.count("/api/v3/order") == 0 and stack.binance.unhandled == []

    # the paper execution traded exactly as the library's backtest of the same candles
    expected = paper_expectation(stack.binance, newest - (PAPER_CANDLES - 1) * HOUR_MS, newest)
    assert expected["trades"] >= 1, "five days of SMA 10/30 on the loopback's wave close trades"
    trades, held = expected["trades"], expected["open"]
    assert (status["totalTrades"], status["openPositions"]) == (trades, held)
    assert status["pnl"] == pytest.approx(expected["pnl"], rel=1e-9, abs=1e-6)
    assert status["pnlPercent"] == pytest.approx(expected["pnl"] / 100, rel=1e-6, abs=1e-6)
    fills = http.get("/api/notifications", params={"type": "trade"}).json()
    assert fills["total"] == 2 * trades + held  # one per buy and one per sell
    started_note = http.get("/api/notifications", params={"type": "engine_start"}).json()
    assert started_note["total"] == 1 and set(started_note["notifications"][0]) >= REFERENCE_KEYS["notification"]
    assert started_note["notifications"][0]["read_at"] is None

    board = http.get("/api/dashboard/multi-flow").json()
    row = next(f for f in board["flows"] if f["id"] == flow_id)
    assert set(row) >= REFERENCE_KEYS["flow_row"] and set(board["aggregate"]) >= REFERENCE_KEYS["aggregate"]
    assert (row["status"], row["executionId"], row["symbol"], row["exchange"]) == \
        ("running", execution_id, "BTC/USDT", "binance")
    assert (row["tradeCount"], row["openPositions"], row["errorCount"]) == (trades, held, 0)
    assert row["pnl"] == pytest.approx(status["pnl"]) and row["pnlPct"] == pytest.approx(status["pnlPercent"])
    assert row["winRate"] == pytest.approx(expected["winRate"])
    assert (board["aggregate"]["runningFlows"], board["aggregate"]["totalTrades"]) == (1, trades)

    stopped = http.post("/api/engine/stop", json={"executionId": execution_id})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["stoppedAt"]
    assert stopped.json()["currentTick"] == PAPER_CANDLES
    stop_note = http.get("/api/notifications", params={"type": "engine_stop"}).json()
    assert stop_note["total"] == 1 and f"{PAPER_CANDLES} ticks" in stop_note["notifications"][0]["message"]
    assert http.get("/api/dashboard/multi-flow").json()["aggregate"]["runningFlows"] == 0

    performance = http.get(f"/api/flows/{flow_id}/performance")
    assert performance.status_code == 200, performance.text
    p = performance.json()
    assert set(p) == REFERENCE_KEYS["performance"]
    assert (p["totalTrades"], len(p["equityCurve"]), p["equityCurve"][0]["equity"]) == (trades, trades + 1, 10000)
    assert p["pnl"] == pytest.approx(expected["realized"], rel=1e-9, abs=1e-6)
    assert p["equityCurve"][-1]["equity"] == pytest.approx(10000 + expected["realized"], rel=1e-12)
    assert p["winRate"] == pytest.approx(expected["winRate"])
    assert all(isinstance(point["timestamp"], int) for point in p["equityCurve"])  # epoch ms, as the reference
    return execution_id


def ask_the_assistant(http: httpx.Client, stack: Stack, flow_id: str) -> None:
    saved = http.post("/api/ai-keys", json={"apiKey": AI_KEY})
    assert saved.status_code == 200, saved.text
    assert saved.json()["success"] is True and saved.json()["hint"].startswith("sk-ant-")
    assert AI_KEY not in saved.text
    assert http.get("/api/ai-keys").json()["hasKey"] is True
    assert http.post("/api/ai-keys/validate").json()["valid"] is True
    assert stack.anthropic.models.seen_keys == [AI_KEY]  # the decrypted key reached Anthropic

    stack.anthropic.script(text_reply("I can help", " you with", " that strategy."))
    question = "Should the stop-loss be tighter?"
    chunks: list[Any] = []
    with http.stream("POST", "/api/chat", json={"messages": [{"role": "user", "content": question}],
                                                "flowId": flow_id}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = sse_payloads(response.read().decode())
    assert chunks == [{"text": "I can help"}, {"text": " you with"}, {"text": " that strategy."}, "[DONE]"]
    sent = stack.anthropic.requests[-1]
    assert sent.api_key == AI_KEY and sent.body["messages"][-1]["content"] == question

    messages = http.get("/api/chat/messages", params={"flowId": flow_id}).json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == \
        [("user", question), ("assistant", "I can help you with that strategy.")]
    assert all(set(m) >= REFERENCE_KEYS["message"] for m in messages)


def a_stranger_sees_nothing(http: httpx.Client, ids: dict[str, str]) -> None:
    flow, execution = ids["flow"], ids["execution"]
    not_found = [
        http.get(f"/api/flows/{flow}"), http.put(f"/api/flows/{flow}", json={"name": "mine"}),
        http.get(f"/api/flows/{flow}/versions"), http.post(f"/api/flows/{flow}/versions", json={}),
        http.post(f"/api/flows/{flow}/versions/{ids['version']}/restore"),
        http.get(f"/api/flows/{flow}/performance"), http.get(f"/api/engine/backtest/{ids['backtest']}"),
        http.post("/api/engine/backtest", json={"flowId": flow, "exchange": "binance", "symbol": "BTC/USDT",
                                                "timeframe": "1h", "startDate": BACKTEST_RANGE[0],
                                                "endDate": BACKTEST_RANGE[1]}),
        http.post("/api/engine/start", json={"flowId": flow, "mode": "paper"}),
        http.get("/api/engine/status", params={"executionId": execution}),
        http.post("/api/engine/stop", json={"executionId": execution}),
        http.post("/api/exchange-keys/validate", json={"id": ids["key"]}),
        http.request("DELETE", "/api/exchange-keys", json={"id": ids["key"]}),
        http.patch(f"/api/notifications/{ids['notification']}"),
        http.delete(f"/api/notifications/{ids['notification']}"),
        http.get("/api/chat/messages", params={"flowId": flow}),
        http.request("DELETE", "/api/chat/messages", params={"flowId": flow}),
        http.delete(f"/api/flows/{flow}"),
    ]
    for response in not_found:
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), \
            (response.request.method, response.request.url, response.text)
    assert http.get("/api/flows").json() == {"flows": []}
    assert http.get("/api/exchange-keys").json() == {"keys": []}
    assert http.get("/api/ai-keys").json()["hasKey"] is False
    assert http.get("/api/notifications").json() == {"notifications": [], "total": 0}
    assert http.get("/api/dashboard/balance").json() == {"totalUsd": 0.0, "exchanges": []}
    assert http.get("/api/dashboard/multi-flow").json()["flows"] == []


def test_a_traders_journey(stack: Stack) -> None:
    alice = sign_in(stack)
    with httpx.Client(base_url=stack.url, headers=alice, timeout=30) as http:
        browse_market(http)
        flow_id, version_id = create_flow(http)
        backtest_id = run_backtest(http, stack.binance, flow_id)
        key_id = connect_exchange(http, stack)
        execution_id = trade_on_paper(http, stack, flow_id)
        ask_the_assistant(http, stack, flow_id)
        notifications = http.get("/api/notifications").json()
        notification_id = notifications["notifications"][0]["id"]
        owned = {"flow": flow_id, "version": version_id, "backtest": backtest_id, "key": key_id,
                 "execution": execution_id, "notification": notification_id}

    bob = sign_in(stack)
    with httpx.Client(base_url=stack.url, headers=bob, timeout=30) as http:
        a_stranger_sees_nothing(http, owned)
    with httpx.Client(base_url=stack.url, headers=alice, timeout=30) as http:  # and nothing of alice's changed
        assert http.get(f"/api/flows/{flow_id}").json()["name"] == FLOW["name"]
        assert len(http.get("/api/exchange-keys").json()["keys"]) == 1
        assert len(http.get("/api/chat/messages", params={"flowId": flow_id}).json()["messages"]) == 2
        assert http.get("/api/notifications").json() == notifications

    output = stack.log.read_text()
    assert output.startswith("Capandex on http://127.0.0.1:")  # the capture works: the banner is there
    assert len(stack.secrets) == 4  # two JWTs, the exchange key and its secret
    for secret in [*stack.secrets, AI_KEY]:
        assert secret not in output, "a secret reached the server's stdout/stderr"
    assert secret_guard.find_secret(output) is None  # nor anything shaped like a JWT or an Anthropic key
