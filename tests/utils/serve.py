"""Waiting for a ``capandex serve`` subprocess the end-to-end tests started."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30.0) -> None:
    """Poll ``url``'s OpenAPI document until it answers (bounded); fail with the server's output
    if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/api/openapi.json", timeout=1).raise_for_status()
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"capandex serve did not come up: {log.read_text()}")
            time.sleep(0.1)
