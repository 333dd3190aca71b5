"""Hardening of the keys endpoints: the per-user rate limit of the two validate endpoints (an
oracle for stolen keys), credentials with characters no exchange accepts (were a 500 or a 502),
validation messages that never repeat the input, and reprs without secrets."""

from __future__ import annotations

import uuid

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import field_validator

from capandex.api.app import create_app
from capandex.models import RequestModel
from tests.utils import secret_guard

LIMITS = {"CAPANDEX_KEY_VALIDATION_RATE_BURST": "3", "CAPANDEX_KEY_VALIDATION_RATE_PER_HOUR": "36"}


def creds() -> dict[str, str]:
    body = {"apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(*body.values())
    return body


def test_validate_endpoints_share_a_per_user_rate_limit(api, configure, signed_binance, anthropic_api) -> None:
    configure(**LIMITS)
    user = api.as_user()
    good = creds()
    signed_binance.add_account(good["apiKey"], good["secret"], {"USDT": (1.0, 0.0)})
    ai_key = "sk-ant-api03-" + uuid.uuid4().hex
    secret_guard.register(ai_key)
    anthropic_api.keys.add(ai_key)
    assert user.post("/api/ai-keys", json={"apiKey": ai_key}).status_code == 200
    # bad input is refused before a token is taken: fixing a typo costs nothing
    assert user.post("/api/exchange-keys/validate", json={"exchange": "ftx", **good}).status_code == 400
    assert user.post("/api/exchange-keys/validate", json={"exchange": "binance"}).status_code == 422
    answers = [user.post("/api/exchange-keys/validate", json={"exchange": "binance", **good}),
               user.post("/api/exchange-keys/validate", json={"exchange": "binance", **creds()}),
               user.post("/api/ai-keys/validate")]
    assert [(r.status_code, r.json()["valid"]) for r in answers] == [(200, True), (200, False), (200, True)]
    calls = (len(signed_binance.verified) + len(signed_binance.rejected), len(anthropic_api.seen_keys))
    for limited in (user.post("/api/exchange-keys/validate", json={"exchange": "binance", **good}),
                    user.post("/api/exchange-keys/validate", json={"id": "key_" + uuid.uuid4().hex}),
                    user.post("/api/ai-keys/validate")):
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 90 <= int(limited.headers["retry-after"]) <= 100  # one token per 100 s
    # refused requests reached neither the exchange nor Anthropic
    assert (len(signed_binance.verified) + len(signed_binance.rejected), len(anthropic_api.seen_keys)) == calls
    other = api.as_user()  # buckets are per user
    assert other.post("/api/exchange-keys/validate", json={"exchange": "binance", **good}).json()["valid"] is True
    # saving, listing and deleting are not limited
    assert user.post("/api/exchange-keys", json={"exchange": "binance", **good}).status_code == 201
    assert user.get("/api/exchange-keys").status_code == 200


def test_probing_other_users_key_ids_is_rate_limited(api, configure, signed_binance) -> None:
    configure(**LIMITS)
    prober = api.as_user()
    statuses = [prober.post("/api/exchange-keys/validate", json={"id": f"key_{i:032x}"}).status_code
                for i in range(4)]
    assert statuses == [404, 404, 404, 429]


CANARY = "CANARY" + uuid.uuid4().hex[:12]


@pytest.mark.parametrize(("field", "value"), [
    ("apiKey", CANARY + "é€"),          # not encodable in an HTTP header: was a 500
    ("apiKey", CANARY + "\nX-Evil: 1"),  # header injection attempt: was a 502
    ("apiKey", CANARY + "\x00"),
    ("apiKey", CANARY + " tail"),
    ("secret", CANARY + "é"),
    ("secret", CANARY + "\x00"),
    ("passphrase", CANARY + "€"),
])
@pytest.mark.parametrize("path", ["/api/exchange-keys", "/api/exchange-keys/validate"])
def test_credentials_with_impossible_characters_are_400_naming_the_field(api, signed_binance, path, field,
                                                                       value) -> None:
    user = api.as_user()
    body = {"exchange": "okx" if field == "passphrase" else "binance", **creds(), "passphrase": "pass-okx-1",
            field: value}
    response = user.post(path, json=body)
    # a NUL is refused for every request body (422, capandex.models.RequestModel) before the
    # credential rules (400) look at the value
    assert response.status_code == (422 if "\x00" in value else 400), response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == [field]
    assert CANARY not in response.text
    assert signed_binance.verified == signed_binance.rejected == []
    assert user.get("/api/exchange-keys").json() == {"keys": []}


def test_a_pem_secret_with_line_breaks_is_accepted(api) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI" + uuid.uuid4().hex + "\n-----END PRIVATE KEY-----"
    secret_guard.register(pem)
    response = api.as_user().post("/api/exchange-keys", json={"exchange": "binance", "apiKey": "ak" + uuid.uuid4().hex,
                                                               "secret": pem})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("suffix", ["é€", "\x00abc", "\x7f", "ab\tcd"])
def test_ai_key_with_impossible_characters_is_400(api, suffix: str) -> None:
    user = api.as_user()
    response = user.post("/api/ai-keys", json={"apiKey": "sk-ant-" + CANARY + suffix})
    nul = "\x00" in suffix  # refused for every body before the key's own rules run
    assert response.status_code == (422 if nul else 400), response.text
    message = "must not contain NUL characters" if nul else "must be printable ASCII without spaces"
    assert response.json()["error"]["details"] == [{"field": "apiKey", "message": message}]
    assert CANARY not in response.text
    assert user.get("/api/ai-keys").json()["hasKey"] is False


class _EchoingBody(RequestModel):
    apiKey: str

    @field_validator("apiKey")
    @classmethod
    def _check(cls, value: str) -> str:
        raise ValueError(f"{value} is not a key")


def test_validation_messages_never_repeat_the_input() -> None:
    """A custom validator that quotes the value: the 422 names the field, not the value."""
    router = APIRouter()

    @router.post("/echo")
    def echo(body: _EchoingBody) -> dict:
        return {}

    response = TestClient(create_app("echo", [router])).post("/echo", json={"apiKey": CANARY})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == [{"field": "apiKey", "message": "invalid value"}]
    assert CANARY not in response.text


def test_reprs_of_objects_carrying_secrets_hide_them() -> None:
    from capandex.chat.service import Turn
    from capandex.keys.models import AiKeySave, ExchangeKeyCreate, ExchangeKeyValidate

    objects = [ExchangeKeyCreate(exchange="okx", apiKey=CANARY + "k", secret=CANARY + "s", passphrase=CANARY + "p"),
               ExchangeKeyValidate(exchange="okx", apiKey=CANARY + "k", secret=CANARY + "s", passphrase=CANARY + "p"),
               AiKeySave(apiKey="sk-ant-" + CANARY),
               Turn(user_id=uuid.uuid4(), flow_id=None, flow=None, api_key="sk-ant-" + CANARY, system="", messages=[])]
    for obj in objects:
        assert CANARY not in repr(obj) and CANARY not in str(obj), type(obj).__name__


def test_at_most_20_saved_keys_per_user(api, monkeypatch) -> None:
    """Saving is free and calls no exchange, so without a cap a user stored hundreds of candidates."""
    user, other = api.as_user(), api.as_user()
    saved = [user.post("/api/exchange-keys", json={"exchange": "binance", **creds()}) for _ in range(20)]
    assert [r.status_code for r in saved] == [201] * 20
    refused = user.post("/api/exchange-keys", json={"exchange": "binance", **creds()})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == {
        "code": "quota_exceeded",
        "message": "You have 20 saved exchange keys; the limit is 20. To add another, delete a key you no "
                   "longer use."}
    assert len(user.get("/api/exchange-keys").json()["keys"]) == 20
    assert other.post("/api/exchange-keys", json={"exchange": "binance", **creds()}).status_code == 201
    assert user.delete("/api/exchange-keys", json={"id": saved[0].json()["id"]}).status_code == 200
    assert user.post("/api/exchange-keys", json={"exchange": "binance", **creds()}).status_code == 201
