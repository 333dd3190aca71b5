"""Structured logging (Powertools' JSON formatter) with secrets scrubbed from every record.

Code must never log a secret in the first place; the scrubber is the second line of defence for
what slips through (an exception message that quotes a header, a library's debug line). It is
installed as the log record factory, so it applies to every logger and every handler (tests'
``caplog`` included), and removes JWTs, Anthropic keys and ``Bearer`` credentials.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

SECRET_PATTERNS = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"  # JWT
    r"|sk-ant-[A-Za-z0-9_-]{6,}"  # Anthropic key
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{12,}"  # an Authorization header value
)
REDACTED = "[redacted]"

_configured = False


def scrub(value: Any) -> Any:
    """``value`` with secrets replaced (strings only; other values are returned as they are)."""
    return SECRET_PATTERNS.sub(REDACTED, value) if isinstance(value, str) else value


def _install_scrubbing_factory() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = scrub(record.msg) if isinstance(record.msg, str) else scrub(str(record.msg))
        return record

    logging.setLogRecordFactory(factory)


def configure_logging() -> None:
    """JSON lines on stderr for the ``capandex`` loggers, at ``LOG_LEVEL`` (default INFO). Idempotent."""
    global _configured
    if _configured:
        return
    _configured = True
    _install_scrubbing_factory()
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "capandex")))
    logger = logging.getLogger("capandex")
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    logger.propagate = True
