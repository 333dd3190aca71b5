"""Keys function: exchange API keys and the Anthropic API key (``/api/exchange-keys…``, ``/api/ai-keys…``).

Secrets go in, never out: every response model lacks secret fields, and request bodies are never
logged. ``POST /api/exchange-keys/validate`` takes the reference's unsaved credentials, or
``{"id"}`` to check a saved key (which updates its ``isValid``). Both validate endpoints share a
per-user rate limit (429 with ``Retry-After``): a validation oracle must not test stolen keys.
Saving, validating and deleting exchange keys and saving the Anthropic key also need Supabase
Auth to confirm the session is live (``ConfirmedUser``): a signed-out session cannot act.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from capandex.api.app import create_app, lambda_handler
from capandex.api.deps import ConfirmedUser, CurrentUser, Db
from capandex.api.openapi import errors
from capandex.errors import ValidationFailed, field_problem
from capandex.exchanges.credentials import Credentials
from capandex.keys import ai, exchange
from capandex.keys.models import (
    AiKeySave,
    AiKeySaved,
    AiKeyStatus,
    AiKeyValidation,
    ExchangeKeyCreate,
    ExchangeKeyCreated,
    ExchangeKeyDelete,
    ExchangeKeysPublic,
    ExchangeKeyValidate,
    ExchangeKeyValidation,
)
from capandex.models import Deleted, Success

exchange_keys = APIRouter(prefix="/api/exchange-keys", tags=["exchange keys"])
ai_keys = APIRouter(prefix="/api/ai-keys", tags=["ai keys"])


@exchange_keys.get("", response_model=ExchangeKeysPublic)
def list_exchange_keys(*, user: CurrentUser, db: Db) -> dict:
    return {"keys": exchange.list_exchange_keys(db, user_id=user.id)}


@exchange_keys.post("", response_model=ExchangeKeyCreated, status_code=status.HTTP_201_CREATED,
                    responses=errors(409))
def create_exchange_key(*, user: ConfirmedUser, db: Db, body: ExchangeKeyCreate) -> dict:
    credentials = Credentials(body.apiKey, body.secret, body.passphrase or None)
    return exchange.create_exchange_key(db, user_id=user.id, exchange=body.exchange.lower(),
                                        credentials=credentials, label=body.label or None)


@exchange_keys.delete("", response_model=Deleted, responses=errors(404))
def delete_exchange_key(*, user: ConfirmedUser, db: Db, body: ExchangeKeyDelete | None = None,
                        key_id: Annotated[str | None, Query(alias="id", max_length=64)] = None) -> dict:
    """Delete permanently. The id comes in the JSON body (``{"id"}``, as the reference says) or,
    for clients that cannot send a DELETE body, as ``?id=``."""
    target = body.id if body else key_id
    if not target:
        raise ValidationFailed("Invalid input: id.", details=[field_problem("id", "Field required")])
    exchange.delete_exchange_key(db, user_id=user.id, key_id=target)
    return {"deleted": True}


@exchange_keys.post("/validate", response_model=ExchangeKeyValidation, responses=errors(404, 429, 502))
def validate_exchange_key(*, user: ConfirmedUser, body: ExchangeKeyValidate) -> dict:
    target = body.target()
    if isinstance(target, str):
        return exchange.validate_saved_key(user_id=user.id, key_id=target)
    exchange_id, credentials = target
    return exchange.validate_credentials(user_id=user.id, exchange=exchange_id.lower(), credentials=credentials)


@ai_keys.get("", response_model=AiKeyStatus)
def ai_key_status(*, user: CurrentUser, db: Db) -> dict:
    return ai.ai_key_status(db, user_id=user.id)


@ai_keys.post("", response_model=AiKeySaved)
def save_ai_key(*, user: ConfirmedUser, db: Db, body: AiKeySave) -> dict:
    return {"success": True, "hint": ai.save_ai_key(db, user_id=user.id, api_key=body.apiKey)}


@ai_keys.delete("", response_model=Success)
def delete_ai_key(*, user: CurrentUser, db: Db) -> dict:
    ai.delete_ai_key(db, user_id=user.id)
    return {"success": True}


@ai_keys.post("/validate", response_model=AiKeyValidation, responses=errors(404, 429, 502))
def validate_ai_key(*, user: CurrentUser) -> dict:
    return ai.validate_saved_ai_key(user_id=user.id)


app = create_app("keys", [exchange_keys, ai_keys], requires=("supabase_anon_key",))
handler = lambda_handler(app)
