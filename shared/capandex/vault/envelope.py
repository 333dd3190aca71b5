"""The stored form of sealed secrets and the AES-256-GCM field encryption.

A *sealed* record is the JSON kept in a ``sealed`` column::

    {
      "format": 1,
      "alg": "AES-256-GCM",
      "wrap": {"by": "local", "version": 2},            # or {"by": "kms", "key": "arn:aws:kms:…"}
      "key": "<base64: the record's data key, wrapped>",
      "fields": {"api_key": "<base64: nonce(12) ‖ ciphertext ‖ tag(16)>", "secret": "…"}
    }

Each record has its own random 256-bit data key; only its wrapped form is stored. Every field is
encrypted under that data key with a fresh 96-bit nonce and *associated data* naming the owner,
the record, the purpose and the field (:meth:`VaultContext.aad`), so a ciphertext copied to
another user's row, another record or another field fails authentication instead of decrypting.
The data key itself is wrapped with the same binding (AES-GCM associated data for the local
master key, the KMS *encryption context* in AWS), so moving a whole ``sealed`` document fails too.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from capandex.errors import CapandexError

FORMAT = 1
ALG = "AES-256-GCM"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce, the size GCM is specified for
TAG_BYTES = 16

#: Field names are identifiers, so they cannot collide with the data key's AAD part name.
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class VaultError(CapandexError):
    """A sealed secret could not be sealed or opened: tampered, moved to another record, or its key
    is unavailable. Never carries plaintext or key material; it is a server-side problem (500)."""

    status, code = 500, "vault_error"


TAMPERED = ("A stored secret could not be decrypted: it was altered, copied from another record, "
            "or its key is no longer available.")


@dataclass(frozen=True)
class VaultContext:
    """What a ciphertext is bound to: owner, record and purpose (e.g. ``exchange_key``)."""

    user_id: str
    record_id: str
    purpose: str

    def aad(self, part: str, field_name: str | None = None) -> bytes:
        """Associated data for the data key (``part="key"``) or one field (``part="field"``).

        Canonical JSON (sorted keys, no spaces) so the bytes are the same on every machine.
        """
        doc = {"format": FORMAT, "user": self.user_id, "record": self.record_id, "purpose": self.purpose,
               "part": part, "field": field_name}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def encryption_context(self) -> dict[str, str]:
        """The KMS encryption context: bound into the wrapped data key and visible in CloudTrail
        (identifiers only, never a secret)."""
        return {"capandex:user": self.user_id, "capandex:record": self.record_id,
                "capandex:purpose": self.purpose}


@dataclass(frozen=True, repr=False)
class Sealed:
    """One sealed record: the wrapped data key and the encrypted fields. ``repr`` shows no bytes."""

    wrap: Mapping[str, Any]
    key: bytes
    fields: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def key_version(self) -> str:
        """Which key wraps the data key: ``local:<version>`` or ``kms:<key arn>``."""
        if self.wrap.get("by") == "kms":
            return f"kms:{self.wrap.get('key')}"
        return f"{self.wrap.get('by')}:{self.wrap.get('version')}"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "alg": ALG, "wrap": dict(self.wrap), "key": _b64(self.key),
                "fields": {name: _b64(blob) for name, blob in sorted(self.fields.items())}}

    @classmethod
    def from_json(cls, doc: Any) -> Sealed:
        """Parse a stored document; anything malformed is a :class:`VaultError` (never a crash)."""
        if isinstance(doc, Sealed):
            return doc
        try:
            if isinstance(doc, str | bytes):
                doc = json.loads(doc)
            if doc.get("format") != FORMAT or doc.get("alg") != ALG:
                raise ValueError("unknown format")
            wrap = dict(doc["wrap"])
            if wrap.get("by") not in ("local", "kms"):
                raise ValueError("unknown wrapping")
            fields = {str(name): _unb64(blob) for name, blob in dict(doc["fields"]).items()}
            return cls(wrap=wrap, key=_unb64(doc["key"]), fields=fields)
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
            raise VaultError(TAMPERED) from exc

    def __repr__(self) -> str:
        return f"Sealed(key_version={self.key_version!r}, fields={sorted(self.fields)})"


class Revealed(Mapping[str, str]):
    """Decrypted fields, as a read-only mapping whose ``repr`` hides the values (tracebacks with
    locals, debuggers and log formatters print reprs)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Revealed(fields={sorted(self._values)})"

    __str__ = __repr__


def check_field_name(name: str) -> None:
    if not _FIELD_NAME.match(name):
        raise ValueError(f"vault field names are lower-case identifiers, got {name!r}")


def encrypt_field(data_key: bytes, plaintext: str, aad: bytes) -> bytes:
    """``nonce ‖ ciphertext ‖ tag`` of ``plaintext`` (UTF-8) under ``data_key``, fresh nonce."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad)


def decrypt_field(data_key: bytes, blob: bytes, aad: bytes) -> str:
    """Inverse of :func:`encrypt_field`; a wrong key, AAD or any flipped bit → :class:`VaultError`."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise VaultError(TAMPERED)
    try:
        return AESGCM(data_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()
    except (InvalidTag, UnicodeDecodeError, ValueError) as exc:
        raise VaultError(TAMPERED) from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)
