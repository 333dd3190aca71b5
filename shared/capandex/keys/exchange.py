"""Users' exchange API keys: saved sealed in the vault, listed without secrets, checked against
the exchange, deleted for good.

Public API (other subsystems code against these):

- :func:`load_credentials` (conn, user_id, key_id) → ``(exchange id, Credentials)``; the live
  engine calls it. :class:`NotFound` for a missing or another user's key.
- :func:`record_validation` (conn, user_id, key_id, valid) — e.g. when the exchange rejects a key
  during trading, so the dashboard's ``isValid`` shows it.
- :func:`create_exchange_key`, :func:`list_exchange_keys`, :func:`delete_exchange_key`,
  :func:`validate_credentials`, :func:`validate_saved_key`.

Validation is rate limited per user (bucket ``key_validation`` of :mod:`capandex.ratelimit`,
shared with the Anthropic key's): answering "does this key work?" makes it an oracle for stolen keys.

Saving does not call the exchange (saving must not depend on the exchange being reachable; the
dashboard validates first through ``/api/exchange-keys/validate``): ``isValid`` is ``null`` until
the saved key is validated, then the latest outcome.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import Connection, delete, select, update

import capandex.exchanges.account  # noqa: F401  (installs the filter that keeps ccxt's DEBUG dumps of key headers out of logs)
from capandex.db.quota import enforce_quota
from capandex.db.schema import exchange_keys, exchanges, new_id, utcnow
from capandex.errors import BadRequest, NotFound, field_problem
from capandex.exchanges.credentials import Credentials
from capandex.ratelimit import KEY_VALIDATION, bucket, consume
from capandex.timeutil import iso_utc
from capandex.vault import PURPOSE_EXCHANGE_KEY, VaultContext, get_vault

#: What each credential may contain, by request field. The API key and the passphrase travel in
#: HTTP headers, which only carry printable ASCII (anything else made the HTTP client raise a bare
#: encoding error, a 500, or a header-injection error); a secret is only used to sign, but may be a
#: PEM private key (Binance Ed25519/RSA keys), so it may span lines.
CREDENTIAL_CHARACTERS: tuple[tuple[str, str, re.Pattern[str], str], ...] = (
    ("apiKey", "api_key", re.compile(r"[\x21-\x7e]+"), "must be printable ASCII without spaces"),
    ("secret", "secret", re.compile(r"[\x20-\x7e\r\n\t]+"), "must be printable ASCII (line breaks allowed)"),
    ("passphrase", "passphrase", re.compile(r"[\x20-\x7e]+"), "must be printable ASCII"),
)
#: saved keys one user may keep (saving is free and calls no exchange: without a cap, a user
#: could store any number of candidate keys)
MAX_KEYS_PER_USER = 20


def _ctx(user_id: uuid.UUID, key_id: str) -> VaultContext:
    return VaultContext(user_id=str(user_id), record_id=key_id, purpose=PURPOSE_EXCHANGE_KEY)


def supported_exchange(conn: Connection, exchange_id: str) -> Any:
    """The ``exchanges`` row of an active exchange; :class:`BadRequest` naming the supported ones."""
    rows = conn.execute(select(exchanges).where(exchanges.c.is_active.is_(True))
                        .order_by(exchanges.c.sort_order)).all()
    row = next((r for r in rows if r.id == exchange_id), None)
    if row is None:
        supported = ", ".join(r.id for r in rows) or "none"
        raise BadRequest(f"Unsupported exchange '{exchange_id}'. Supported exchanges: {supported}.",
                         details=[{"field": "exchange", "message": f"must be one of: {supported}"}])
    return row


def check_credential_characters(credentials: Credentials) -> None:
    """:class:`BadRequest` naming every credential with characters no exchange credential has
    (:data:`CREDENTIAL_CHARACTERS`). The message never repeats the value."""
    problems = [field_problem(name, why) for name, attr, allowed, why in CREDENTIAL_CHARACTERS
                if getattr(credentials, attr) is not None and not allowed.fullmatch(getattr(credentials, attr))]
    if problems:
        raise BadRequest(f"Invalid characters in: {', '.join(p['field'] for p in problems)}.", details=problems)


def check_credentials_shape(conn: Connection, exchange_id: str, credentials: Credentials) -> Any:
    """The exchange row, after checking it is supported, has every credential it needs, and that
    the credentials are made of characters an exchange accepts."""
    row = supported_exchange(conn, exchange_id)
    check_credential_characters(credentials)
    if row.requires_passphrase and not credentials.passphrase:
        raise BadRequest(f"{row.name} API keys need their passphrase.",
                         details=[{"field": "passphrase", "message": f"required for {row.id}"}])
    return row


def _public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "exchange": row.exchange, "label": row.label, "createdAt": iso_utc(row.created_at),
            "isValid": row.is_valid}


def create_exchange_key(conn: Connection, *, user_id: uuid.UUID, exchange: str, credentials: Credentials,
                        label: str | None = None) -> dict[str, Any]:
    """Seal and save a key (one row per call: concurrent saves each get their own row).

    Returns ``{"id", "exchange", "label", "createdAt"}``; ``label`` defaults to the exchange name.
    :class:`QuotaExceeded` (409) when the user already has :data:`MAX_KEYS_PER_USER` keys.
    """
    row = check_credentials_shape(conn, exchange, credentials)
    enforce_quota(conn, exchange_keys, user_id=user_id, limit=MAX_KEYS_PER_USER, what="saved exchange keys",
                  remedy="delete a key you no longer use")
    key_id = new_id("key")
    sealed = get_vault().seal({"api_key": credentials.api_key, "secret": credentials.secret,
                               "passphrase": credentials.passphrase}, _ctx(user_id, key_id))
    values = {"id": key_id, "user_id": user_id, "exchange": row.id, "label": label or row.name,
              "api_key_hint": credentials.hint, "sealed": sealed.to_json(), "is_valid": None,
              "validated_at": None, "created_at": utcnow()}
    conn.execute(exchange_keys.insert().values(values))
    return {"id": key_id, "exchange": row.id, "label": values["label"], "createdAt": iso_utc(values["created_at"])}


def list_exchange_keys(conn: Connection, *, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The user's keys, newest first, without any secret (nothing is decrypted)."""
    rows = conn.execute(select(exchange_keys.c.id, exchange_keys.c.exchange, exchange_keys.c.label,
                               exchange_keys.c.created_at, exchange_keys.c.is_valid)
                        .where(exchange_keys.c.user_id == user_id)
                        .order_by(exchange_keys.c.created_at.desc(), exchange_keys.c.id))
    return [_public(r) for r in rows]


def _not_found(key_id: str) -> NotFound:
    return NotFound(f"No exchange key with id '{key_id}'.")


def delete_exchange_key(conn: Connection, *, user_id: uuid.UUID, key_id: str) -> None:
    """Delete the key permanently (the sealed row is gone; nothing is kept)."""
    result = conn.execute(delete(exchange_keys).where(exchange_keys.c.id == key_id,
                                                      exchange_keys.c.user_id == user_id))
    if result.rowcount == 0:
        raise _not_found(key_id)


def load_credentials(conn: Connection, *, user_id: uuid.UUID, key_id: str) -> tuple[str, Credentials]:
    """The exchange id and the decrypted credentials of the user's key ``key_id``.

    :class:`NotFound` when it does not exist or belongs to someone else;
    :class:`~capandex.vault.VaultError` when the stored value was altered or moved. Keep the
    credentials only for the call that needs them.
    """
    row = conn.execute(select(exchange_keys.c.exchange, exchange_keys.c.sealed)
                       .where(exchange_keys.c.id == key_id, exchange_keys.c.user_id == user_id)).first()
    if row is None:
        raise _not_found(key_id)
    return row.exchange, open_credentials(row.sealed, user_id=user_id, key_id=key_id)


def open_credentials(sealed: Any, *, user_id: uuid.UUID, key_id: str) -> Credentials:
    """Decrypt one row's ``sealed`` value into :class:`Credentials`."""
    fields = get_vault().open(sealed, _ctx(user_id, key_id))
    return Credentials(api_key=fields["api_key"], secret=fields["secret"], passphrase=fields.get("passphrase"))


def record_validation(conn: Connection, *, user_id: uuid.UUID, key_id: str, valid: bool) -> bool:
    """Store the outcome of a check of a saved key; ``False`` when the key is gone meanwhile."""
    result = conn.execute(update(exchange_keys)
                          .where(exchange_keys.c.id == key_id, exchange_keys.c.user_id == user_id)
                          .values(is_valid=valid, validated_at=utcnow()))
    return result.rowcount > 0


def _check(exchange_id: str, credentials: Credentials) -> dict[str, Any]:
    from capandex.config import get_settings
    from capandex.exchanges.account import check_credentials

    result = check_credentials(exchange_id, credentials, timeout_s=get_settings().balance_timeout_s)
    body: dict[str, Any] = {"valid": result.valid, "permissions": result.permissions,
                            "account": {"balance": result.balance_usd} if result.valid else None,
                            "warnings": _warnings(result.permissions)}
    if result.reason:
        body["reason"] = result.reason
    return body


def _warnings(permissions: list[str] | None) -> list[str]:
    if permissions and "withdraw" in permissions:
        return ["This API key can withdraw funds. Capandex never withdraws: create a key without "
                "withdrawal permission."]
    return []


def validate_credentials(*, user_id: uuid.UUID, exchange: str, credentials: Credentials) -> dict[str, Any]:
    """Check keys that are not saved (nothing is stored): ``{"valid", "permissions", "account":
    {"balance"}, "warnings", "reason"?}``. Bad input → 400 (takes no token); the user's
    validation bucket empty → 429; exchange unreachable → 503."""
    from capandex.db.session import transaction

    # the server's role: the shared exchanges table, and the user's bucket (users cannot write it)
    with transaction() as conn:
        check_credentials_shape(conn, exchange, credentials)
        bucket(KEY_VALIDATION).take(conn, user_id=user_id)
    return _check(exchange, credentials)


def validate_saved_key(*, user_id: uuid.UUID, key_id: str) -> dict[str, Any]:
    """Check the user's saved key ``key_id`` and store the outcome (its ``isValid``).

    Two short transactions around the exchange call, so none is held open while the exchange
    answers. :class:`NotFound` for a missing or another user's key (a token is taken first, so
    probing ids is limited too); 429 when the user's validation bucket is empty. An unreachable
    exchange (503) stores nothing: it says nothing about the key.
    """
    from capandex.db.session import transaction

    consume(KEY_VALIDATION, user_id=user_id)
    with transaction(user_id) as conn:
        exchange, credentials = load_credentials(conn, user_id=user_id, key_id=key_id)
    body = _check(exchange, credentials)
    del credentials
    with transaction(user_id) as conn:  # a new validated_at: the dashboard's next balance asks anew
        record_validation(conn, user_id=user_id, key_id=key_id, valid=body["valid"])
    return body
