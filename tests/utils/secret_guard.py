"""A pytest plugin that fails any test during which a secret reaches a log record.

Session-wide: register it in ``tests/conftest.py`` with ``pytest_plugins = ["tests.utils.secret_guard"]``.
Per directory: ``from tests.utils.secret_guard import secret_guard  # noqa: F401`` in a conftest.

While a test runs, the root logger is lowered to DEBUG (every library's debug output is seen, as
with the most verbose production setting) and every record — message, arguments, exception text
and ``extra`` fields — is searched for:

- values a test registered with :func:`register` (API keys, secrets, passphrases it used);
- anything shaped like a JWT (``eyJ….eyJ….…``), an Anthropic key (``sk-ant-`` + 16 or more
  characters) or a PEM private key.

A hit fails the test in its teardown, naming the logger (never the secret).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

import pytest

PATTERNS = (
    ("a JWT", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")),
    ("an Anthropic API key", re.compile(r"sk-ant-[A-Za-z0-9_-]{16,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)

_registered: set[str] = set()
_lock = threading.Lock()


def register(*values: str | None) -> None:
    """Treat ``values`` as secrets for the rest of the session (values under 8 chars are ignored:
    too short to search for without false alarms)."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= 8)


def find_secret(text: str) -> str | None:
    """What kind of secret ``text`` contains, or ``None``."""
    with _lock:
        if any(value in text for value in _registered):
            return "a registered secret"
    for kind, pattern in PATTERNS:
        if pattern.search(text):
            return kind
    return None


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


def record_text(record: logging.LogRecord) -> str:
    """Everything a formatter or a JSON log handler could write for ``record``."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string still has its parts searched
        message = f"{record.msg} {record.args}"
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    parts = [message, repr(record.args), repr(extras)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


class GuardHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.hits: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Powertools adds a de-duplication filter to the root logger's handlers when a function's
        # logger is set up; the guard must keep seeing every record anyway.
        return True

    def emit(self, record: logging.LogRecord) -> None:
        kind = find_secret(record_text(record))
        if kind:
            self.hits.append(f"{kind} in a {record.levelname} record of logger {record.name!r}")


@pytest.fixture(autouse=True)
def secret_guard() -> Iterator[GuardHandler]:
    root = logging.getLogger()
    handler, old_level = GuardHandler(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    if handler.hits:
        pytest.fail("secret leaked into logs: " + "; ".join(sorted(set(handler.hits))), pytrace=False)
