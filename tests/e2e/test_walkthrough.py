"""The README's five-minute walk-through, run as written: its bash block against a real
``capandex serve``, with every exchange pointed at a loopback listener that counts connections
(the walk-through must never reach one: its candles are imported)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.serve import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S)
    assert block, "README.md lost its walk-through block"
    return block.group(1)


class CountingListener:
    """A TCP port that accepts and closes connections, counting them (an exchange that must stay unused)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port, self.connections = self.sock.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[dict[str, str], CountingListener]]:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"the walk-through needs {tool}")
    pytest.importorskip("backtesting", reason="the walk-through's candles ship with backtesting.py (dev extra)")
    exchange = CountingListener()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("capandex", f'exec "{sys.executable}" -m capandex.cli "$@"'),
                          ("python", f'exec "{sys.executable}" "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{command}\n")
        shim.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    urls = {name: f"http://127.0.0.1:{exchange.port}" for name in ("binance", "kraken", "okx", "bybit")}
    env = {**os.environ, "CAPANDEX_ENV": "local", "CAPANDEX_DATA_DIR": str(tmp_path / "data"), "PORT": str(port),
           "CAPANDEX_EXCHANGE_URLS": json.dumps(urls), "CAPANDEX_EXCHANGE_TIMEOUT_MS": "2000",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    env.pop("DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "capandex.cli", "serve", "--port", str(port), "--no-ticks"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, tmp_path / "serve.log")
        yield env, exchange
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_the_readme_walkthrough_runs_offline(server, tmp_path: Path) -> None:
    env, exchange = server
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], env=env, cwd=work, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "imported 5,000 1h candles of kraken EUR/USD: 2017-04-19T09:00:00Z to 2018-02-07T15:00:00Z"
    assert out[1].startswith("gaps: 2063 missing candles in 42 gaps")  # forex weekends
    assert re.match(r"kraken\s+EUR/USD\s+1h\s+5,000\s+2017-04-19T09:00:00Z", out[3])
    backtest = json.loads(out[4])
    assert backtest["status"] == "completed" and backtest["metrics"]["totalTrades"] > 10
    page = (work / "report.html").read_text()
    assert "<title>EUR/USD SMA cross — backtest report</title>" in page and "kraken EUR/USD 1h" in page
    assert re.fullmatch(r"\S+ up to candle 2018-01-12T11:00:00Z: done, \d+ fill\(s\)", out[5]) and out[6] == "1 tick(s)"
    status, stopped, performance = (json.loads(line) for line in out[7:10])
    assert status["currentTick"] == 108 and status["totalTrades"] + status["openPositions"] >= 1
    assert stopped == {"status": "stopped", "openPositions": 0,
                       "totalTrades": status["totalTrades"] + status["openPositions"]}
    assert performance["totalTrades"] == stopped["totalTrades"]
    optimised = "\n".join(out[10:])
    assert re.search(r"^best: fast\.period=\d+ slow\.period=\d+ ", optimised, re.M), optimised
    assert "walk-forward 60d/30d: efficiency" in optimised and "stitched out of sample" in optimised
    assert exchange.connections == 0  # offline: no exchange was asked anything
