"""Load test: 50 signed-in users against ``capandex serve`` on PostgreSQL for 60 s.

    .venv/bin/python benchmarks/load.py [--users 50] [--seconds 60]

A real ``capandex serve`` process (uvicorn, the gateway over every function) on a throw-away
database of the local PostgreSQL (``tests/utils/postgres.py``: Supabase's roles, row-level security
on every request), with the loopback Binance as the exchange. Each user is one client that loops,
one request at a time, over a weighted mix: flow CRUD (create, read, list, rename, delete),
versions (save, list), notifications (list, mark read; a paper start and stop make them), market
reads (exchanges, symbols, a ticker) and small backtests (a week of 1h candles, in the request).

Each user remembers what it wrote; after the run it reads everything back: its flows (exactly the
ones it created and did not delete, each with the last name it gave), each flow's version count
and its notification count. Any difference is a lost write. Any non-2xx answer is an error. Prints
p50/p99 latency per route and exits non-zero on an error or a lost write. Run it on a quiet
machine (``uptime``): the server, Postgres and the 50 clients share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.capandex.engine.factories import sma_cross_flow
from tests.utils.binance_server import BinanceServer
from tests.utils.http_server import free_port
from tests.utils.serve import wait_until_serving

SETTINGS = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}
#: flows one user keeps at most (deletes its oldest beyond)
KEEP_FLOWS = 8


@dataclass
class Flow:
    id: str
    name: str
    versions: int = 0


@dataclass
class User:
    """One signed-in user and what it wrote (the truth its reads are checked against)."""

    headers: dict[str, str]
    flows: dict[str, Flow] = field(default_factory=dict)
    notifications: int = 0  # made by its paper starts and stops


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)

    async def call(self, client: httpx.AsyncClient, route: str, method: str, url: str, user: User,
                   **kwargs: object) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = await client.request(method, url, headers=user.headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.errors.append(f"{route}: {type(exc).__name__}")
            return None
        self.latencies[route].append(time.perf_counter() - began)
        if not 200 <= response.status_code < 300:
            self.errors.append(f"{route}: {response.status_code} {response.text[:200]}")
            return None
        return response


async def create_flow(client: httpx.AsyncClient, rec: Recorder, user: User) -> None:
    name = f"flow {uuid.uuid4().hex[:8]}"
    response = await rec.call(client, "POST /api/flows", "POST", "/api/flows", user,
                              json={**sma_cross_flow(5, 20), "name": name, "settings": SETTINGS})
    if response is not None:
        user.flows[response.json()["id"]] = Flow(response.json()["id"], name)
    while len(user.flows) > KEEP_FLOWS:
        oldest = next(iter(user.flows))
        if await rec.call(client, "DELETE /api/flows/{id}", "DELETE", f"/api/flows/{oldest}", user) is not None:
            del user.flows[oldest]
        else:
            break


async def rename_flow(client: httpx.AsyncClient, rec: Recorder, user: User, flow: Flow) -> None:
    name = f"renamed {uuid.uuid4().hex[:8]}"
    if await rec.call(client, "PUT /api/flows/{id}", "PUT", f"/api/flows/{flow.id}", user, json={"name": name}):
        flow.name = name


async def save_version(client: httpx.AsyncClient, rec: Recorder, user: User, flow: Flow) -> None:
    if await rec.call(client, "POST /api/flows/{id}/versions", "POST", f"/api/flows/{flow.id}/versions", user,
                      json={"description": "load"}):
        flow.versions += 1


async def start_and_stop(client: httpx.AsyncClient, rec: Recorder, user: User, flow: Flow) -> None:
    started = await rec.call(client, "POST /api/engine/start", "POST", "/api/engine/start", user,
                             json={"flowId": flow.id, "mode": "paper"})
    if started is None:
        return
    user.notifications += 1  # engine_start
    if await rec.call(client, "POST /api/engine/stop", "POST", "/api/engine/stop", user,
                      json={"executionId": started.json()["executionId"]}):
        user.notifications += 1  # engine_stop


async def backtest(client: httpx.AsyncClient, rec: Recorder, user: User, flow: Flow) -> None:
    day = random.randint(1, 20)
    await rec.call(client, "POST /api/engine/backtest", "POST", "/api/engine/backtest", user, json={
        "flowId": flow.id, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
        "startDate": f"2024-03-{day:02d}", "endDate": f"2024-03-{day + 7:02d}"})


async def one_action(client: httpx.AsyncClient, rec: Recorder, user: User) -> None:
    flow = random.choice(list(user.flows.values())) if user.flows else None
    roll = random.random()
    if flow is None or roll < 0.10:
        await create_flow(client, rec, user)
    elif roll < 0.25:
        await rec.call(client, "GET /api/flows/{id}", "GET", f"/api/flows/{flow.id}", user)
    elif roll < 0.35:
        await rec.call(client, "GET /api/flows", "GET", "/api/flows", user)
    elif roll < 0.43:
        await rename_flow(client, rec, user, flow)
    elif roll < 0.51:
        await save_version(client, rec, user, flow)
    elif roll < 0.57:
        await rec.call(client, "GET /api/flows/{id}/versions", "GET", f"/api/flows/{flow.id}/versions", user)
    elif roll < 0.65:
        await rec.call(client, "GET /api/notifications", "GET", "/api/notifications", user)
    elif roll < 0.68:
        await rec.call(client, "POST /api/notifications", "POST", "/api/notifications", user)
    elif roll < 0.72:
        await start_and_stop(client, rec, user, flow)
    elif roll < 0.77:
        await rec.call(client, "GET /api/exchanges", "GET", "/api/exchanges", user)
    elif roll < 0.82:
        await rec.call(client, "GET /api/market?action=symbols", "GET", "/api/market", user,
                       params={"exchange": "binance", "action": "symbols"})
    elif roll < 0.90:
        await rec.call(client, "GET /api/market?symbol", "GET", "/api/market", user,
                       params={"exchange": "binance", "symbol": "BTC/USDT"})
    else:
        await backtest(client, rec, user, flow)


async def run_user(base: str, rec: Recorder, user: User, until: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < until:
            await one_action(client, rec, user)


async def lost_writes(base: str, users: list[User]) -> list[str]:
    """Every difference between what each user wrote and what the server now returns."""
    lost: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for user in users:
            listed = (await client.get("/api/flows", headers=user.headers)).json()["flows"]
            if {f["id"]: f["name"] for f in listed} != {f.id: f.name for f in user.flows.values()}:
                lost.append(f"flows of a user: wrote {len(user.flows)}, read {len(listed)} (or a name differs)")
            for flow in user.flows.values():
                versions = (await client.get(f"/api/flows/{flow.id}/versions", headers=user.headers)).json()
                if len(versions["versions"]) != min(flow.versions, 50):
                    lost.append(f"versions of {flow.id}: wrote {flow.versions}, read {len(versions['versions'])}")
            total = (await client.get("/api/notifications", headers=user.headers)).json()["total"]
            if total != user.notifications:
                lost.append(f"notifications: made {user.notifications}, read {total}")
    return lost


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET
    from tests.utils import postgres

    server, cluster = postgres.server_url()
    database = postgres.create_test_database(server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, BinanceServer() as binance:
        env = {**os.environ, "CAPANDEX_ENV": "local", "CAPANDEX_DATA_DIR": tmp, "DATABASE_URL": database,
               "CAPANDEX_EXCHANGE_URLS": binance.exchange_urls_env(), "LOG_LEVEL": "WARNING"}
        log = Path(tmp) / "serve.log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "capandex.cli", "serve", "--port", str(port),
                                        "--no-ticks"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_serving(base, process, log, timeout_s=60)
            tokens = [issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET, ttl_seconds=7200) for _ in range(args.users)]
            users = [User({"Authorization": f"Bearer {token}"}) for token in tokens]
            rec = Recorder()
            began = time.monotonic()
            asyncio.run(_all(base, rec, users, began + args.seconds))
            elapsed = time.monotonic() - began
            lost = asyncio.run(lost_writes(base, users))
        finally:
            process.terminate()
            process.wait(timeout=30)
            server_log = log.read_text()
    postgres.drop_database(server, database)
    if cluster is not None:
        cluster.close()

    total = sum(len(v) for v in rec.latencies.values())
    print(f"{args.users} users, {elapsed:.0f} s, {total:,} requests ({total / elapsed:.0f}/s), "
          f"{len(rec.errors)} errors, {len(lost)} lost writes")
    print("| route | requests | p50 ms | p99 ms |\n|---|---|---|---|")
    for route in sorted(rec.latencies):
        values = rec.latencies[route]
        print(f"| `{route}` | {len(values):,} | {percentile(values, 0.5) * 1000:.0f} | "
              f"{percentile(values, 0.99) * 1000:.0f} |")
    for line in (rec.errors[:10] + lost[:10]):
        print("  !", line)
    if "Traceback" in server_log:
        print(server_log[-3000:])
    return 0 if not rec.errors and not lost else 1


async def _all(base: str, rec: Recorder, users: list[User], until: float) -> None:
    await asyncio.gather(*(run_user(base, rec, user, until) for user in users))


if __name__ == "__main__":
    sys.exit(main())
