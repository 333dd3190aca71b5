"""``/api/exchange-keys`` and ``/api/ai-keys`` over HTTP, on Postgres with RLS, against the
loopback Binance and Anthropic servers."""

from __future__ import annotations

import uuid

import pytest

from tests.utils import secret_guard

BALANCES = {"USDT": (5000.0, 234.5), "BTC": (1.0, 0.0)}


def new_creds() -> dict[str, str]:
    body = {"apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(*body.values())
    return body


@pytest.fixture
def user(api):
    return api.as_user(uuid.uuid4())


def save(user, exchange: str = "binance", **extra) -> tuple[str, dict[str, str]]:
    creds = new_creds()
    response = user.post("/api/exchange-keys", json={"exchange": exchange, **creds, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"], creds


def test_exchange_keys_crud(user) -> None:
    assert user.get("/api/exchange-keys").json() == {"keys": []}
    created = user.post("/api/exchange-keys", json={"exchange": "binance", "label": "Main Account", **new_creds()})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "exchange", "label", "createdAt"}
    assert body["exchange"] == "binance" and body["label"] == "Main Account" and body["createdAt"].endswith("Z")
    listed = user.get("/api/exchange-keys").json()["keys"]
    assert listed == [{**body, "isValid": None}]
    deleted = user.request("DELETE", "/api/exchange-keys", json={"id": body["id"]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    assert user.get("/api/exchange-keys").json() == {"keys": []}
    again = user.request("DELETE", "/api/exchange-keys", json={"id": body["id"]})
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_delete_by_query_and_missing_id(user) -> None:
    key_id, _ = save(user)
    assert user.delete(f"/api/exchange-keys?id={key_id}").json() == {"deleted": True}
    missing = user.delete("/api/exchange-keys")
    assert missing.status_code == 422 and missing.json()["error"]["details"][0]["field"] == "id"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"exchange": "ftx"}, 400, "exchange"),
    ({"exchange": "okx"}, 400, "passphrase"),
    ({"exchange": "binance", "apiKey": ""}, 422, "apiKey"),
    ({"exchange": "binance", "secret": None}, 422, "secret"),
    ({"exchange": "binance", "label": "x" * 101}, 422, "label"),
    ({"exchange": "binance", "extra": 1}, 422, "extra"),
])
def test_bad_input_names_the_field(user, body: dict, status: int, field: str) -> None:
    response = user.post("/api/exchange-keys", json={**new_creds(), **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert field in [d["field"] for d in error.get("details", [])]
    if field == "exchange":
        assert "binance, okx, bybit, mexc, coinbase, kraken" in error["message"]


def test_okx_with_passphrase_is_saved(user) -> None:
    key_id, _ = save(user, exchange="okx", passphrase="pp-" + uuid.uuid4().hex)
    assert user.get("/api/exchange-keys").json()["keys"][0]["id"] == key_id


def test_validate_unsaved_credentials(user, signed_binance) -> None:
    creds = new_creds()
    signed_binance.add_account(creds["apiKey"], creds["secret"], BALANCES)
    response = user.post("/api/exchange-keys/validate", json={"exchange": "binance", **creds})
    assert response.status_code == 200, response.text
    assert response.json() == {"valid": True, "permissions": ["read", "trade"], "account": {"balance": 5234.5},
                               "warnings": [], "reason": None}
    assert user.get("/api/exchange-keys").json() == {"keys": []}  # validate does not save
    wrong = user.post("/api/exchange-keys/validate", json={"exchange": "binance", "apiKey": creds["apiKey"],
                                                           "secret": "x" + creds["secret"]})
    assert wrong.status_code == 200
    assert wrong.json()["valid"] is False and "Signature" in wrong.json()["reason"]
    assert wrong.json()["account"] is None


def test_validate_warns_about_withdrawal_permission(user, signed_binance) -> None:
    creds = new_creds()
    signed_binance.add_account(creds["apiKey"], creds["secret"], BALANCES, enableWithdrawals=True)
    body = user.post("/api/exchange-keys/validate", json={"exchange": "binance", **creds}).json()
    assert "withdraw" in body["permissions"] and "withdraw" in body["warnings"][0]


def test_validate_saved_key_updates_is_valid(user, signed_binance) -> None:
    key_id, creds = save(user)
    first = user.post("/api/exchange-keys/validate", json={"id": key_id})
    assert first.status_code == 200 and first.json()["valid"] is False  # unknown to the exchange yet
    assert user.get("/api/exchange-keys").json()["keys"][0]["isValid"] is False
    signed_binance.add_account(creds["apiKey"], creds["secret"], BALANCES)
    second = user.post("/api/exchange-keys/validate", json={"id": key_id}).json()
    assert second["valid"] is True and second["account"] == {"balance": 5234.5}
    assert user.get("/api/exchange-keys").json()["keys"][0]["isValid"] is True
    # the stored, decrypted secret signed the request
    assert ("/api/v3/account", creds["apiKey"]) in signed_binance.verified


@pytest.mark.parametrize(("body", "fields"), [
    ({}, ["exchange", "apiKey", "secret"]),
    ({"id": "key_x", "exchange": "binance"}, ["exchange"]),
    ({"exchange": "binance", "apiKey": "a"}, ["secret"]),
])
def test_validate_bad_input(user, body: dict, fields: list[str]) -> None:
    response = user.post("/api/exchange-keys/validate", json=body)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == fields


def test_validate_unsupported_exchange(user) -> None:
    response = user.post("/api/exchange-keys/validate", json={"exchange": "ftx", **new_creds()})
    assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == "exchange"


def test_another_users_key_is_404_for_delete_and_validate(api, signed_binance) -> None:
    owner, other = api.as_user(uuid.uuid4()), api.as_user(uuid.uuid4())
    key_id, creds = save(owner)
    signed_binance.add_account(creds["apiKey"], creds["secret"], BALANCES)
    assert other.get("/api/exchange-keys").json() == {"keys": []}
    for response in (other.request("DELETE", "/api/exchange-keys", json={"id": key_id}),
                     other.post("/api/exchange-keys/validate", json={"id": key_id})):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert signed_binance.verified == []  # the other user's attempt never reached the exchange
    assert [k["id"] for k in owner.get("/api/exchange-keys").json()["keys"]] == [key_id]


def test_unauthenticated_is_401(api) -> None:
    for method, path in (("GET", "/api/exchange-keys"), ("POST", "/api/exchange-keys/validate"),
                         ("GET", "/api/ai-keys"), ("POST", "/api/ai-keys/validate")):
        response = api.client.request(method, path, json={})
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


# -- AI keys ------------------------------------------------------------------------------------

def new_ai_key() -> str:
    key = "sk-ant-api03-" + uuid.uuid4().hex
    secret_guard.register(key)
    return key


def test_ai_keys_flow(user, anthropic_api) -> None:
    assert user.get("/api/ai-keys").json() == {"hasKey": False, "hint": None, "isValid": None}
    key = new_ai_key()
    saved = user.post("/api/ai-keys", json={"apiKey": key})
    assert saved.status_code == 200 and saved.json() == {"success": True, "hint": "sk-ant-****"}
    assert user.get("/api/ai-keys").json() == {"hasKey": True, "hint": "sk-ant-****", "isValid": None}
    invalid = user.post("/api/ai-keys/validate")
    assert invalid.status_code == 200 and invalid.json()["valid"] is False and "401" in invalid.json()["reason"]
    assert user.get("/api/ai-keys").json()["isValid"] is False
    anthropic_api.keys.add(key)
    assert user.post("/api/ai-keys/validate").json() == {"valid": True, "reason": None}
    assert user.get("/api/ai-keys").json()["isValid"] is True
    assert user.delete("/api/ai-keys").json() == {"success": True}
    assert user.get("/api/ai-keys").json()["hasKey"] is False
    missing = user.post("/api/ai-keys/validate")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_ai_key_must_start_with_sk_ant(user) -> None:
    response = user.post("/api/ai-keys", json={"apiKey": "sk-proj-" + uuid.uuid4().hex})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": "apiKey", "message": "must start with sk-ant-"}]
    assert user.post("/api/ai-keys", json={}).status_code == 422


def test_ai_key_is_per_user(api, anthropic_api) -> None:
    owner, other = api.as_user(uuid.uuid4()), api.as_user(uuid.uuid4())
    owner.post("/api/ai-keys", json={"apiKey": new_ai_key()})
    assert other.get("/api/ai-keys").json()["hasKey"] is False
    assert other.post("/api/ai-keys/validate").status_code == 404
    assert other.delete("/api/ai-keys").json() == {"success": True}
    assert owner.get("/api/ai-keys").json()["hasKey"] is True
    assert anthropic_api.seen_keys == []


def test_kms_backed_vault_end_to_end(api, configure, monkeypatch, anthropic_api) -> None:
    """With CAPANDEX_VAULT_KMS_KEY_ID set, keys are sealed under KMS data keys (moto)."""
    import boto3
    from moto import mock_aws
    from sqlalchemy import select

    from capandex.db.schema import ai_keys
    from capandex.db.session import transaction

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        key_arn = boto3.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]["Arn"]
        configure(CAPANDEX_VAULT_KMS_KEY_ID=key_arn)
        user_id = uuid.uuid4()
        user, ai_key = api.as_user(user_id), new_ai_key()
        assert user.post("/api/ai-keys", json={"apiKey": ai_key}).status_code == 200
        anthropic_api.keys.add(ai_key)
        assert user.post("/api/ai-keys/validate").json()["valid"] is True  # decrypted through KMS
        with transaction() as conn:
            sealed = conn.execute(select(ai_keys.c.sealed).where(ai_keys.c.user_id == user_id)).scalar_one()
        assert sealed["wrap"] == {"by": "kms", "key": key_arn}
