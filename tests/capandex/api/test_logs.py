"""Secrets are scrubbed from every log record, whatever logger or handler sees it."""

from __future__ import annotations

import logging

from capandex.auth import issue_dev_token
from capandex.config import DEV_JWT_SECRET
from capandex.logs import configure_logging, scrub


def test_scrub_removes_jwts_anthropic_keys_and_bearer_values() -> None:
    token = issue_dev_token(__import__("uuid").uuid4(), DEV_JWT_SECRET)
    text = f"auth={token} key=sk-ant-api03-abcdefghijkl header=Bearer abcdefghijklmnop1234"
    cleaned = scrub(text)
    assert token not in cleaned and "sk-ant-api03" not in cleaned and "abcdefghijklmnop1234" not in cleaned
    assert cleaned.count("[redacted]") == 3


def test_records_are_scrubbed_for_every_handler(caplog) -> None:
    configure_logging()
    token = issue_dev_token(__import__("uuid").uuid4(), DEV_JWT_SECRET)
    with caplog.at_level(logging.INFO):
        logging.getLogger("somebody.else").info("got %s", token)
        logging.getLogger("capandex.api").warning("header Bearer %s", "sk-ant-zzzzzzzzzzzz")
    assert token not in caplog.text and "sk-ant-zzzz" not in caplog.text
    assert caplog.text.count("[redacted]") == 2
