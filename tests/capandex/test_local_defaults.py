"""No local surprises: one data directory wherever a command runs, a busy port refused before the
banner, and every validation problem on the command line (as JSON with ``--json``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_data_directory_is_per_user_not_per_folder(monkeypatch, tmp_path: Path) -> None:
    from capandex.config import Settings

    monkeypatch.delenv("CAPANDEX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "xdg" / "capandex"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "capandex"
    monkeypatch.setenv("CAPANDEX_DATA_DIR", "relative/dir")  # made absolute once, at start
    assert Settings().data_dir == tmp_path / "relative" / "dir"


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capandex.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {**os.environ, "CAPANDEX_ENV": "local", "XDG_DATA_HOME": str(tmp_path / "xdg"),
                   "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    environment.pop("CAPANDEX_DATA_DIR", None)
    environment.pop("DATABASE_URL", None)
    return environment


def test_tick_from_any_folder_uses_and_names_the_same_data(env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli("tick", env=env, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith(f"data: {tmp_path / 'xdg' / 'capandex'}")
    assert (tmp_path / "xdg" / "capandex" / "capandex.db").exists() and not list(elsewhere.iterdir())


def test_cli_errors_list_every_problem(env, tmp_path: Path) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"nodes": [{"id": "a", "type": "indicator", "data": {"kind": "sma"}},
                                          {"id": "b", "type": "bogus"}], "edges": []}))
    candles = ROOT / "tests" / "data" / "engine_candles_1h.csv"
    done = _cli("backtest", str(flow), "--candles", str(candles), env=env, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: invalid flow:") and len(lines) >= 4  # the message, then each problem
    assert any(line.startswith("  node 'b' ") for line in lines[1:])
    as_json = _cli("backtest", str(flow), "--candles", str(candles), "--json", env=env, cwd=tmp_path)
    error = json.loads(as_json.stdout)["error"]
    assert as_json.returncode == 2 and error["code"] == "validation_error"
    assert len(error["details"]) == len(lines) - 1

    at = _cli("tick", "--at", "notadate", env=env, cwd=tmp_path)
    assert at.returncode == 2 and "--at: must be an ISO 8601 date or date-time" in at.stderr
    future = _cli("tick", "--at", "2999-01-01T00:00:00Z", env=env, cwd=tmp_path)
    assert future.returncode == 2 and "--at: is in the future" in future.stderr  # not a silent "0 tick(s)"
    empty = _cli("tick", "--at", "", env=env, cwd=tmp_path)  # an unset shell variable: not "now", live included
    assert empty.returncode == 2 and "--at: is empty" in empty.stderr
    capital = _cli("backtest", str(flow), "--candles", str(candles), "--capital", "-5", env=env, cwd=tmp_path)
    assert "--capital: must be greater than 0" in capital.stderr


def test_serve_refuses_a_busy_port_before_its_banner(env, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = _cli("serve", "--port", str(port), "--no-ticks", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "Capandex on" not in done.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and f"--port {port + 1}" in done.stderr
