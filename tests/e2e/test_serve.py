"""`capandex serve` as a new user meets it: a real process, real HTTP, a Supabase-style cookie."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from capandex.auth import issue_dev_token
from capandex.config import DEV_JWT_SECRET
from tests.utils.http_server import free_port

FLOW = {"name": "SMA cross", "settings": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"},
        "nodes": [{"id": "fast", "type": "indicator", "data": {"kind": "sma", "period": 10}}], "edges": []}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    data_dir = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "CAPANDEX_ENV": "local", "CAPANDEX_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "capandex.cli", "serve", "--port", str(port), "--no-ticks"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/api/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None:
                pytest.fail(f"capandex serve exited: {process.stdout.read()}")
            time.sleep(0.2)
    yield url, Path(data_dir)
    process.terminate()
    process.wait(timeout=10)


def cookie_for(user: uuid.UUID) -> dict[str, str]:
    session = json.dumps({"access_token": issue_dev_token(user, DEV_JWT_SECRET), "token_type": "bearer"})
    value = "base64-" + base64.urlsafe_b64encode(session.encode()).decode().rstrip("=")
    return {"Cookie": f"sb-127-auth-token={value}"}


def test_a_flow_lifecycle_over_real_http(server) -> None:
    url, data_dir = server
    alice, bob = cookie_for(uuid.uuid4()), cookie_for(uuid.uuid4())
    with httpx.Client(base_url=url, timeout=10) as http:
        flow_id = http.post("/api/flows", json=FLOW, headers=alice).json()["id"]
        assert http.get(f"/api/flows/{flow_id}", headers=alice).json()["name"] == "SMA cross"
        assert http.put(f"/api/flows/{flow_id}", json={"name": "v2"}, headers=alice).status_code == 200
        for i in range(51):
            created = http.post(f"/api/flows/{flow_id}/versions", json={"description": f"s{i + 1}"}, headers=alice)
            assert created.status_code == 201
        versions = http.get(f"/api/flows/{flow_id}/versions", headers=alice).json()["versions"]
        assert len(versions) == 50 and versions[0]["version"] == 51 and versions[-1]["version"] == 2

        assert http.get(f"/api/flows/{flow_id}", headers=bob).status_code == 404
        assert http.get("/api/flows", headers=bob).json() == {"flows": []}
        assert http.get(f"/api/flows/{flow_id}/versions", headers=bob).status_code == 404

        restored = http.post(f"/api/flows/{flow_id}/versions/{versions[-1]['id']}/restore", headers=alice)
        assert restored.json() == {"restored": True, "version": 2}
        assert http.delete(f"/api/flows/{flow_id}", headers=alice).json() == {"deleted": True}
        assert http.get(f"/api/flows/{flow_id}", headers=alice).status_code == 404
        assert http.get("/api/flows").status_code == 401
    assert (data_dir / "capandex.db").exists()


def test_the_data_directory_is_private(server) -> None:
    """Database, its WAL and the vault key readable by their owner only (were 0644 in a 0755 folder)."""
    url, data_dir = server
    user = cookie_for(uuid.uuid4())
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/api/flows", json=FLOW, headers=user).status_code == 201
        assert http.post("/api/ai-keys", json={"apiKey": "sk-ant-api03-" + uuid.uuid4().hex},
                         headers=user).status_code == 200
    assert data_dir.stat().st_mode & 0o777 == 0o700
    files = {p.name: p.stat().st_mode & 0o777 for p in data_dir.iterdir() if p.is_file()}
    assert {"capandex.db", "capandex.db-wal", "vault-master-key.json"} <= set(files), files
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}
