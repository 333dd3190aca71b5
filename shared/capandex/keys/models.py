"""Request and response bodies of ``/api/exchange-keys``, ``/api/ai-keys`` and the dashboard
balance. Response models carry no secret field at all, so none can leak into a response; the
request models' secret fields are left out of ``repr`` (tracebacks with locals, debuggers, log
formatters print reprs)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from capandex.errors import ValidationFailed, field_problem
from capandex.exchanges.credentials import Credentials
from capandex.models import RequestModel, ResponseModel, schema_examples

#: generous upper bounds: RSA/Ed25519 PEM secrets (Binance, Coinbase CDP) run to a few hundred chars
MAX_API_KEY = 512
MAX_SECRET = 4096
MAX_PASSPHRASE = 256


_KEY_ID = "key_6d1e0f9a2b3c4d5e8f7a6b5c4d3e2f10"
_CREDENTIALS = {"exchange": "binance", "apiKey": "your-binance-api-key", "secret": "your-binance-secret"}


class ExchangeKeyCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {**_CREDENTIALS, "label": "Main account"}))

    exchange: str = Field(min_length=1, max_length=32)
    label: str | None = Field(default=None, max_length=100)
    apiKey: str = Field(min_length=1, max_length=MAX_API_KEY, repr=False)
    secret: str = Field(min_length=1, max_length=MAX_SECRET, repr=False)
    passphrase: str | None = Field(default=None, max_length=MAX_PASSPHRASE, repr=False)


class ExchangeKeyDelete(RequestModel):
    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {"id": _KEY_ID}))

    id: str = Field(min_length=1, max_length=64)


class ExchangeKeyValidate(RequestModel):
    """Either unsaved credentials (``exchange``, ``apiKey``, ``secret``, ``passphrase``?), as the
    reference describes, or ``{"id"}`` of a saved key (its ``isValid`` is then updated)."""

    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: dict(_CREDENTIALS), lambda: {"id": _KEY_ID}))

    id: str | None = Field(default=None, min_length=1, max_length=64)
    exchange: str | None = Field(default=None, min_length=1, max_length=32)
    apiKey: str | None = Field(default=None, min_length=1, max_length=MAX_API_KEY, repr=False)
    secret: str | None = Field(default=None, min_length=1, max_length=MAX_SECRET, repr=False)
    passphrase: str | None = Field(default=None, max_length=MAX_PASSPHRASE, repr=False)

    def target(self) -> str | tuple[str, Credentials]:
        """The saved key's id, or ``(exchange, credentials)``; :class:`ValidationFailed` (422)
        naming the fields when the body is neither form."""
        given = [name for name in ("exchange", "apiKey", "secret", "passphrase") if getattr(self, name)]
        if self.id is not None:
            if given:
                raise ValidationFailed("Give either the id of a saved key or credentials, not both.",
                                       details=[field_problem(n, "not allowed with id") for n in given])
            return self.id
        missing = [name for name in ("exchange", "apiKey", "secret") if not getattr(self, name)]
        if missing:
            raise ValidationFailed(f"Invalid input: {', '.join(missing)}.",
                                   details=[field_problem(n, "Field required") for n in missing])
        return str(self.exchange), Credentials(str(self.apiKey), str(self.secret), self.passphrase or None)


class ExchangeKeyPublic(ResponseModel):
    id: str
    exchange: str
    label: str | None
    createdAt: str
    isValid: bool | None = None


class ExchangeKeyCreated(ResponseModel):
    id: str
    exchange: str
    label: str | None
    createdAt: str


class ExchangeKeysPublic(ResponseModel):
    keys: list[ExchangeKeyPublic]


class AccountInfo(ResponseModel):
    balance: float | None = Field(description="USD total of the account's stablecoins")


class ExchangeKeyValidation(ResponseModel):
    valid: bool
    permissions: list[str] | None = Field(
        description="what the key may do (read, trade, withdraw, …); null where the exchange does not say")
    account: AccountInfo | None = None
    warnings: list[str] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="why the exchange refused the key (valid=false)")


class AiKeySave(RequestModel):
    model_config = ConfigDict(json_schema_extra=schema_examples(lambda: {"apiKey": "sk-ant-api03-your-key"}))

    apiKey: str = Field(min_length=1, max_length=512, repr=False)


class AiKeyStatus(ResponseModel):
    hasKey: bool
    hint: str | None
    isValid: bool | None = None


class AiKeySaved(ResponseModel):
    success: bool
    hint: str


class AiKeyValidation(ResponseModel):
    valid: bool
    reason: str | None = None


class ExchangeBalance(ResponseModel):
    id: str
    exchange: str
    label: str | None
    balanceUsd: float | None
    error: str | None = None


class DashboardBalance(ResponseModel):
    totalUsd: float
    exchanges: list[ExchangeBalance]
