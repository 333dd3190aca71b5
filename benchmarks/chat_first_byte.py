"""Chat: how long a user waits for the first SSE byte, beyond what Anthropic itself takes.

The chat function runs as deployed (``functions/chat/app.py``'s ``streaming_app`` under uvicorn,
what the Lambda Web Adapter serves) against PostgreSQL (tests/utils/postgres.py) and the
loopback Anthropic API (tests/utils/anthropic_server.py) with the real ``anthropic`` SDK. The
loopback API waits ``--upstream-ms`` before its first event, standing for Anthropic's own time
to first token; our overhead is the time to the first byte of the answer minus that wait: the
request's auth, the rate-limit token, loading and decrypting the user's key, the flow, building
the SDK client and the request, and relaying the event.

"Warm" is a process that has answered a few messages already; "first message" is the first
message of a fresh process whose init has run (import of the app, the ``anthropic`` preload).
The import of ``anthropic`` itself, which the first message would pay without the preload, is
measured on its own in a fresh process.

Usage::

    .venv/bin/python benchmarks/chat_first_byte.py [--messages 30] [--upstream-ms 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
from harness import ROOT

from tests.utils import postgres
from tests.utils.anthropic_server import AnthropicServer, Pause, StreamReply, text_reply
from tests.utils.chat import GOOD_KEY
from tests.utils.http_server import free_port

ASK = {"messages": [{"role": "user", "content": "Why does my flow not trade?"}]}


def start_chat(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """uvicorn on the chat function's streaming app, as run.sh starts it."""
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "functions" / "chat"),
                                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                                "--log-level", "warning", "app:streaming_app"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)  # the adapter's readiness check
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the chat app did not start")


def first_byte_ms(port: int, token: str) -> float:
    """Milliseconds from sending POST /api/chat to the first byte of its body."""
    started = time.perf_counter()
    with httpx.stream("POST", f"http://127.0.0.1:{port}/api/chat", json=ASK, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, response.read()
        elapsed = None
        for _chunk in response.iter_raw():  # read the whole answer, so the next request starts clean
            if elapsed is None:
                elapsed = time.perf_counter() - started
    assert elapsed is not None
    return elapsed * 1000


def anthropic_import_ms() -> float:
    code = "import time; s = time.perf_counter(); import anthropic; print(time.perf_counter() - s)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30, help="warm messages measured")
    parser.add_argument("--upstream-ms", type=float, default=300.0, help="Anthropic's own time to its first event")
    args = parser.parse_args()
    server, _cluster = postgres.server_url()
    database = postgres.create_test_database(server)
    upstream_s = args.upstream_ms / 1000
    with AnthropicServer(api_keys={GOOD_KEY}) as upstream, tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CAPANDEX_ENV": "local", "DATABASE_URL": database, "CAPANDEX_DATA_DIR": data,
               "ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_MAX_RETRIES": "0",
               "CAPANDEX_CHAT_RATE_BURST": "1000", "CAPANDEX_CHAT_RATE_PER_MINUTE": "100000",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
        os.environ.update({k: env[k] for k in ("CAPANDEX_ENV", "DATABASE_URL", "CAPANDEX_DATA_DIR")})
        from capandex.auth import issue_dev_token
        from capandex.config import DEV_JWT_SECRET
        from tests.utils.chat import save_key

        user = uuid.uuid4()
        save_key(user)
        token = issue_dev_token(user, DEV_JWT_SECRET)
        reply = StreamReply([Pause(upstream_s), *text_reply("Your flow ", "buys only when…").steps])
        upstream.script(*[reply] * (args.messages + 10))
        results = {}
        for label in ("first message", "first message, snapshotted init", "warm"):
            port = free_port()
            snapshot = {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"} if "snapshotted" in label else {}
            process = start_chat({**env, **snapshot}, port)
            try:
                if label.startswith("first message"):
                    results[label] = [first_byte_ms(port, token) - args.upstream_ms]
                else:
                    for _ in range(3):
                        first_byte_ms(port, token)
                    results[label] = [first_byte_ms(port, token) - args.upstream_ms for _ in range(args.messages)]
            finally:
                process.terminate()
                process.wait(timeout=10)
    postgres.drop_database(server, database)
    warm = sorted(results["warm"])
    print(json.dumps({"upstream_ms": args.upstream_ms, "database": "PostgreSQL"}))
    print(f"warm, {len(warm)} messages: overhead to the first byte p50 {statistics.median(warm):.0f} ms, "
          f"p95 {warm[int(len(warm) * 0.95) - 1]:.0f} ms, max {warm[-1]:.0f} ms")
    print(f"first message of a fresh process (init done, anthropic preloaded): overhead "
          f"{results['first message'][0]:.0f} ms")
    print(f"the same after an init run as before a SnapStart snapshot (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start): "
          f"overhead {results['first message, snapshotted init'][0]:.0f} ms")
    print(f"import anthropic in a fresh process (what that first message would add without the preload): "
          f"{anthropic_import_ms():.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
