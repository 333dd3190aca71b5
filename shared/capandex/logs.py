"""The one logging set-up of every function and of the CLI: Powertools' JSON logger, secrets
scrubbed from every record, a correlation id on every line of an invocation.

:func:`configure_logging` (called by every function's entry point, :mod:`capandex.runtime`, and by
``capandex serve``) makes the ``capandex`` logger a Powertools ``Logger``: one JSON line per record
on stdout, at ``LOG_LEVEL`` (default INFO). Every ``capandex.*`` logger propagates to it. Powertools
filters ``capandex`` records out of the handlers already on the root logger when it is set up (the
Lambda runtime's), so no record is written twice; records of other libraries keep the runtime's
format. :func:`correlate` sets the id every line carries until the next invocation (the API
Gateway request id, the SQS message id, the backtest id).

Code must never log a secret in the first place; the scrubber is the second line of defence for
what slips through (an exception message that quotes a header, a library's debug line). It is
installed as the log record factory, so it applies to every logger and every handler (tests'
``caplog`` included), and removes JWTs, Anthropic keys, ``Bearer`` credentials and webhook tokens
from messages; fields passed as ``extra`` are the caller's to clean (the access log's path goes
through :func:`loggable_path`).
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

SECRET_PATTERNS = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"  # JWT
    r"|sk-ant-[A-Za-z0-9_-]{6,}"  # Anthropic key
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{12,}"  # an Authorization header value
    r"|(?<=/api/webhooks/)([^/\s\"'?#]+/)[^/\s\"'?#]+"  # a webhook URL's token (fires the flow's trades)
)
REDACTED = "[redacted]"
#: ``/api/webhooks/{flowId}/{token}``: the token is the credential, the flow id is kept
_WEBHOOK_PATH = re.compile(r"^(/api/webhooks/[^/]+/)[^/]+")

#: the Powertools service name and the name of the logger every capandex.* logger propagates to
SERVICE = "capandex"

#: libraries whose INFO lines repeat one of ours (Mangum logs "GET /path 200" like the access log)
QUIET_LIBRARIES = ("mangum",)

_logger: Logger | None = None


def _redact(match: re.Match[str]) -> str:
    flow = match.group(1)  # a webhook URL keeps its flow id
    return f"{flow}{REDACTED}" if flow else REDACTED


def scrub(value: Any) -> Any:
    """``value`` with secrets replaced (strings only; other values are returned as they are)."""
    return SECRET_PATTERNS.sub(_redact, value) if isinstance(value, str) else value


def loggable_path(path: str) -> str:
    """A request path fit for a log line: ``/api/webhooks/{flowId}/{token}`` loses its token."""
    return _WEBHOOK_PATH.sub(rf"\g<1>{REDACTED}", path)


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


def configure_logging() -> Logger:
    """Install the scrubber and the ``capandex`` Powertools logger (idempotent); return the logger."""
    global _logger
    if _logger is not None:
        return _logger
    _install_scrubbing_factory()
    from aws_lambda_powertools import Logger

    _logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO").upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return _logger


def correlate(correlation_id: str | None, **keys: Any) -> None:
    """Stamp every following record with ``correlation_id`` (and ``keys``) until the next call.

    Keys set by an earlier call are dropped first, so one invocation's ids never leak into the next.
    """
    logger = configure_logging()
    logger.clear_state()
    logger.set_correlation_id(correlation_id)
    if keys:
        logger.append_keys(**keys)


def set_correlation_id(correlation_id: str | None) -> None:
    """Change the correlation id only (one SQS record of a batch), keeping the invocation's keys."""
    configure_logging().set_correlation_id(correlation_id)
