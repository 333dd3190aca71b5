"""A real headless Chromium for page tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot run here (no internet but package registries), so it
drives the system's Chromium (``apt-get install chromium``) with the flags this machine needs.
:func:`chromium_or_skip` skips a test with the reason when either part is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: where tests keep what they saw (screenshots); gitignored, kept after the run for people to look at
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium_or_skip() -> str:
    path = os.environ.get("CAPANDEX_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: install Debian's package (apt-get install -y chromium) to run the browser tests")
    pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package (dev extra)")
    return path


@contextmanager
def offline_page(width: int = 1300, height: int = 900) -> Iterator[tuple[Any, list[str], list[str]]]:
    """``(page, problems, requests)``: a page with the network off; every console error or warning
    and uncaught exception lands in ``problems``, every URL the page asks for in ``requests``."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": width, "height": height})
            page = context.new_page()
            problems: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            yield page, problems, requests
        finally:
            browser.close()


@contextmanager
def served_page(url: str, body: bytes, headers: dict[str, str], cookies: list[dict[str, Any]] = (),
                width: int = 1300, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """``(page, problems)``: Chromium opened at ``url``, answered with ``body`` and ``headers`` as a
    server would (so response headers such as Content-Security-Policy apply), with ``cookies`` set
    for the site; every other request is refused without touching the network. ``problems`` as in
    :func:`offline_page`."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            if cookies:
                context.add_cookies(list(cookies))
            context.route("**/*", lambda route: route.fulfill(status=200, body=body, headers=headers)
                          if route.request.url == url else route.abort())
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
            page.goto(url)
            yield page, problems
        finally:
            browser.close()
