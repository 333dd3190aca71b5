"""Exchange API credentials that never show themselves in a log line or a traceback."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Credentials:
    """An exchange API key pair (and the passphrase some exchanges, e.g. OKX, require).

    ``repr``/``str`` show only a short hint of the API key, never the secret or the passphrase,
    so a credentials object in a log line, an exception or a debugger leaks nothing.
    """

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key='{self.hint}', secret='***'{', passphrase=***' if self.passphrase else ''})"

    __str__ = __repr__

    @property
    def hint(self) -> str:
        """The API key's last four characters, for display (``…a1b2``)."""
        return f"…{self.api_key[-4:]}" if len(self.api_key) > 8 else "…"

    def fingerprint(self) -> str:
        """A stable, non-reversible id of the whole triple (HMAC-SHA256, truncated).

        Used to key the per-container client cache: the secret itself never becomes a dict key
        that a heap dump or a debug print of the cache could show.
        """
        material = "\x00".join((self.api_key, self.secret, self.passphrase or "")).encode()
        return hmac.new(b"capandex-client-cache", material, hashlib.sha256).hexdigest()[:32]
