"""The user's Anthropic API key: saved sealed in the vault, one per user, checked against the
Models API.

Public API (other subsystems code against these):

- :func:`save_ai_key` (conn, user_id, api_key) → the hint ``sk-ant-****`` (replaces any saved key);
- :func:`load_ai_key` (conn, user_id) → the decrypted key, or ``None`` when none is saved;
  :func:`load_saved_ai_key` → the same with the record's id (to record a check of that key);
- :func:`record_validation` (conn, user_id, record_id, valid) → ``isValid`` of the status, for
  anything that learns whether the key works (the validate endpoint, a 401 to the chat);
- :func:`ai_key_status`, :func:`delete_ai_key`, :func:`validate_saved_ai_key`.

The hint is the constant prefix ``sk-ant-****``: it tells the dashboard *that* a key is saved and
discloses none of its characters.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select, update

from capandex.db.schema import ai_keys, new_id, utcnow
from capandex.db.session import upsert_insert
from capandex.errors import BadRequest, NotFound, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.ratelimit import KEY_VALIDATION, consume
from capandex.vault import PURPOSE_AI_KEY, VaultContext, get_vault

PREFIX = "sk-ant-"
HINT = "sk-ant-****"
FIELD = "api_key"
#: the key travels in an HTTP header: printable ASCII, no spaces (anything else could never work,
#: and made the HTTP client fail with an error that quotes the header value)
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")


def _ctx(user_id: uuid.UUID, record_id: str) -> VaultContext:
    return VaultContext(user_id=str(user_id), record_id=record_id, purpose=PURPOSE_AI_KEY)


def check_format(api_key: str) -> None:
    """:class:`BadRequest` (400, field ``apiKey``) unless the key looks like an Anthropic key:
    ``sk-ant-`` and more printable ASCII without spaces. The message never repeats the value."""
    if not api_key.startswith(PREFIX) or len(api_key) <= len(PREFIX):
        raise BadRequest("The Anthropic API key must start with 'sk-ant-'.",
                         details=[{"field": "apiKey", "message": "must start with sk-ant-"}])
    if not _KEY_CHARACTERS.fullmatch(api_key):
        raise BadRequest("The Anthropic API key contains characters no Anthropic key has.",
                         details=[{"field": "apiKey", "message": "must be printable ASCII without spaces"}])


def save_ai_key(conn: Connection, *, user_id: uuid.UUID, api_key: str) -> str:
    """Seal and save ``api_key`` as the user's Anthropic key, replacing any previous one.

    Concurrent saves are safe: one upsert on the unique ``user_id``, and each row's id and sealed
    value come from the same statement, so the stored key always decrypts (last writer wins).
    Returns the hint. Validity is unknown (``None``) until :func:`validate_saved_ai_key` runs.
    """
    check_format(api_key)
    record_id = new_id("aik")
    sealed = get_vault().seal({FIELD: api_key}, _ctx(user_id, record_id)).to_json()
    values = {"id": record_id, "user_id": user_id, "provider": "anthropic", "hint": HINT, "sealed": sealed,
              "is_valid": None, "validated_at": None, "created_at": utcnow()}
    conn.execute(_upsert(conn, values))
    return HINT


def _upsert(conn: Connection, values: dict[str, Any]) -> Any:
    stmt = upsert_insert(conn, ai_keys).values(values)
    return stmt.on_conflict_do_update(index_elements=[ai_keys.c.user_id],
                                      set_={k: stmt.excluded[k] for k in values if k != "user_id"})


def _row(conn: Connection, user_id: uuid.UUID) -> Any:
    return conn.execute(select(ai_keys).where(ai_keys.c.user_id == user_id)).first()


@dataclass(frozen=True)
class SavedAiKey:
    """The saved key and its record id (which changes whenever a new key is saved)."""

    id: str
    api_key: str = field(repr=False)


def load_saved_ai_key(conn: Connection, *, user_id: uuid.UUID) -> SavedAiKey | None:
    """The user's decrypted Anthropic key with its record id, or ``None`` when none is saved.

    Keep the key only for the call that needs it (pass it to the SDK, drop it).
    :class:`~capandex.vault.VaultError` when the stored value was altered.
    """
    row = _row(conn, user_id)
    if row is None:
        return None
    return SavedAiKey(row.id, get_vault().open(row.sealed, _ctx(user_id, row.id))[FIELD])


def load_ai_key(conn: Connection, *, user_id: uuid.UUID) -> str | None:
    """The user's decrypted Anthropic key, or ``None`` when none is saved (see :func:`load_saved_ai_key`)."""
    saved = load_saved_ai_key(conn, user_id=user_id)
    return saved.api_key if saved else None


def record_validation(conn: Connection, *, user_id: uuid.UUID, record_id: str, valid: bool) -> bool:
    """Record whether the key ``record_id`` works (``isValid`` of :func:`ai_key_status`).

    Only that key: one saved since the check has another id and stays unchecked. ``True`` when
    the key is still the saved one (and the outcome was recorded).
    """
    result = conn.execute(update(ai_keys).where(ai_keys.c.user_id == user_id, ai_keys.c.id == record_id)
                          .values(is_valid=valid, validated_at=utcnow()))
    return result.rowcount > 0


def ai_key_status(conn: Connection, *, user_id: uuid.UUID) -> dict[str, Any]:
    """``{"hasKey", "hint", "isValid"}`` — nothing is decrypted."""
    row = _row(conn, user_id)
    if row is None:
        return {"hasKey": False, "hint": None, "isValid": None}
    return {"hasKey": True, "hint": row.hint, "isValid": row.is_valid}


def delete_ai_key(conn: Connection, *, user_id: uuid.UUID) -> bool:
    """Remove the saved key permanently; ``True`` when there was one (deleting none is no error)."""
    return conn.execute(delete(ai_keys).where(ai_keys.c.user_id == user_id)).rowcount > 0


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of asking the provider whether a key works."""

    valid: bool
    reason: str | None = None


def check_anthropic_key(api_key: str) -> KeyCheck:
    """List one model through the ``anthropic`` SDK with ``api_key`` (``ANTHROPIC_BASE_URL``
    honoured). 401/403 → ``KeyCheck(False, reason)``; a rate limit → :class:`RateLimited`;
    unreachable, timed out or overloaded → :class:`UpstreamUnavailable`; another error status →
    :class:`UpstreamError`. Never puts the key or the SDK's message text in an error."""
    import anthropic

    from capandex.config import get_settings

    settings = get_settings()
    client = anthropic.Anthropic(api_key=api_key, base_url=settings.anthropic_base_url,
                                 timeout=min(settings.anthropic_timeout_seconds, 15.0), max_retries=1)
    try:
        client.models.list(limit=1)
        return KeyCheck(True)
    except anthropic.AuthenticationError:
        return KeyCheck(False, "Anthropic rejected the API key (401): it is wrong, revoked or expired.")
    except anthropic.PermissionDeniedError:
        return KeyCheck(False, "Anthropic refused this API key access to the Models API (403).")
    except anthropic.RateLimitError as exc:
        raise RateLimited("Anthropic is rate limiting this key; validate again later.",
                          retry_after=_retry_after(exc)) from None
    except (anthropic.APIConnectionError, anthropic.InternalServerError):  # incl. timeouts, 529
        raise UpstreamUnavailable("Anthropic could not be reached or is overloaded; retry later.") from None
    except anthropic.APIStatusError as exc:
        raise UpstreamError(f"Anthropic answered with HTTP {exc.status_code} while listing models.") from None
    finally:
        client.close()


def _retry_after(exc: Any) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after"))
    except (TypeError, ValueError, AttributeError):
        return None


def validate_saved_ai_key(*, user_id: uuid.UUID) -> dict[str, Any]:
    """Check the saved key with Anthropic and record the outcome (``isValid`` of the status).

    Runs in two short transactions around the network call, so no database transaction is held
    open while Anthropic answers. :class:`NotFound` when no key is saved; :class:`RateLimited`
    when the user's validation bucket (shared with exchange keys) is empty.
    """
    from capandex.db.session import transaction

    consume(KEY_VALIDATION, user_id=user_id)  # shared with exchange keys
    with transaction(user_id) as conn:
        row = _row(conn, user_id)
        if row is None:
            raise NotFound("No Anthropic API key is saved; save one first.")
        record_id, sealed = row.id, row.sealed
    result = check_anthropic_key(get_vault().open(sealed, _ctx(user_id, record_id))[FIELD])
    with transaction(user_id) as conn:
        record_validation(conn, user_id=user_id, record_id=record_id, valid=result.valid)
    return {"valid": result.valid, **({"reason": result.reason} if result.reason else {})}
