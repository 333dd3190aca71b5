"""No key, secret, passphrase or JWT in any response or log record, over a whole key life cycle
with every logger at DEBUG; tampering answers a clean 500."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import update

from tests.utils import secret_guard
from tests.utils.secret_guard import record_text


def test_no_secret_in_responses_or_logs(api, signed_binance, anthropic_api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    user_id = uuid.uuid4()
    user = api.as_user(user_id)
    jwt = user.auth["Authorization"].removeprefix("Bearer ")
    binance = {"apiKey": "bin-key-" + uuid.uuid4().hex, "secret": "bin-secret-" + uuid.uuid4().hex}
    okx = {"apiKey": "okx-key-" + uuid.uuid4().hex, "secret": "okx-secret-" + uuid.uuid4().hex,
           "passphrase": "okx-pass-" + uuid.uuid4().hex}
    ai_key = "sk-ant-api03-" + uuid.uuid4().hex
    secrets = [*binance.values(), *okx.values(), ai_key, jwt]
    secret_guard.register(*secrets)
    signed_binance.add_account(binance["apiKey"], binance["secret"], {"USDT": (10.0, 0.0)}, enableWithdrawals=True)
    anthropic_api.keys.add(ai_key)

    responses = [
        user.post("/api/exchange-keys/validate", json={"exchange": "binance", **binance}),
        user.post("/api/exchange-keys/validate", json={"exchange": "binance", "apiKey": binance["apiKey"],
                                                       "secret": binance["secret"] + "x"}),
        user.post("/api/exchange-keys", json={"exchange": "binance", "label": "Main", **binance}),
        user.post("/api/exchange-keys", json={"exchange": "okx", "label": "OKX", **okx}),
        user.post("/api/exchange-keys", json={"exchange": "okx", "apiKey": okx["apiKey"], "secret": okx["secret"]}),
        user.post("/api/exchange-keys", json={"exchange": "nope", **binance}),
        user.get("/api/exchange-keys"),
    ]
    keys = responses[-1].json()["keys"]
    binance_id = next(k["id"] for k in keys if k["exchange"] == "binance")
    okx_id = next(k["id"] for k in keys if k["exchange"] == "okx")
    responses += [
        user.post("/api/exchange-keys/validate", json={"id": binance_id}),
        user.post("/api/exchange-keys/validate", json={"id": okx_id}),  # no loopback OKX: an error answer
        user.get("/api/dashboard/balance"),
        user.post("/api/ai-keys", json={"apiKey": ai_key}),
        user.post("/api/ai-keys", json={"apiKey": "sk-bad-" + ai_key}),
        user.get("/api/ai-keys"),
        user.post("/api/ai-keys/validate"),
        user.request("DELETE", "/api/exchange-keys", json={"id": binance_id}),
        user.request("DELETE", "/api/exchange-keys", json={"id": okx_id}),
        user.delete("/api/ai-keys"),
        user.get("/api/exchange-keys"),
    ]
    assert responses[0].json()["valid"] is True and responses[1].json()["valid"] is False
    assert responses[7].json()["valid"] is True and responses[9].json()["totalUsd"] == 10.0
    assert responses[13].json() == {"valid": True, "reason": None}
    assert ("/api/v3/account", binance["apiKey"]) in signed_binance.verified
    assert len(caplog.records) > 20  # the flow really logged (ccxt, httpx, anthropic, capandex)
    for response in responses:
        text = response.text + str(dict(response.headers))
        assert not [s for s in secrets if s in text], response.request.url
    for record in caplog.records:
        text = record_text(record)
        assert not [s for s in secrets if s in text], f"{record.name}: a secret was logged"


def test_tampered_row_is_a_clean_500(api, signed_binance) -> None:
    from capandex.db.schema import exchange_keys
    from capandex.db.session import transaction

    user = api.as_user(uuid.uuid4())
    creds = {"apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(*creds.values())
    key_id = user.post("/api/exchange-keys", json={"exchange": "binance", **creds}).json()["id"]
    with transaction() as conn:
        row = conn.execute(exchange_keys.select().where(exchange_keys.c.id == key_id)).one()
        sealed = dict(row.sealed)
        sealed["fields"] = {**sealed["fields"], "secret": sealed["fields"]["api_key"]}
        # marked valid as if it had passed validation before: the balance route then opens it
        conn.execute(update(exchange_keys).where(exchange_keys.c.id == key_id).values(sealed=sealed, is_valid=True))
    for response in (user.post("/api/exchange-keys/validate", json={"id": key_id}),
                     user.get("/api/dashboard/balance")):
        text = response.text
        assert creds["secret"] not in text and "Traceback" not in text
    validate = user.post("/api/exchange-keys/validate", json={"id": key_id})
    assert validate.status_code == 500 and validate.json()["error"]["code"] == "vault_error"
    # the operator's detail (what failed, where the key file is) is logged, not shown
    assert validate.json()["error"]["message"] == "Something went wrong on our side; it has been logged."
    balance = user.get("/api/dashboard/balance").json()
    entry = balance["exchanges"][0]
    assert entry["balanceUsd"] is None and "could not be decrypted" in entry["error"]
    assert signed_binance.verified == []


@pytest.mark.parametrize("path", ["/api/exchange-keys", "/api/ai-keys"])
def test_responses_carry_no_secret_fields(path: str) -> None:
    """The OpenAPI response schemas of the keys routes have no secret-named properties at all."""
    from capandex.api.functions import load_function

    document = load_function("keys").app.openapi()
    schemas = document["components"]["schemas"]
    for operation in document["paths"][path].values():
        ref = operation["responses"].get("200", operation["responses"].get("201"))["content"]["application/json"][
            "schema"]["$ref"].rsplit("/", 1)[-1]
        properties = _all_properties(schemas, ref)
        assert not {"apiKey", "secret", "passphrase", "sealed"} & properties, ref


def _all_properties(schemas: dict, name: str) -> set[str]:
    schema, found = schemas[name], set()
    for prop, spec in schema.get("properties", {}).items():
        found.add(prop)
        for ref in _refs(spec):
            found |= _all_properties(schemas, ref)
    return found


def _refs(spec) -> list[str]:
    if isinstance(spec, dict):
        out = [spec["$ref"].rsplit("/", 1)[-1]] if "$ref" in spec else []
        return out + [r for v in spec.values() for r in _refs(v)]
    if isinstance(spec, list):
        return [r for v in spec for r in _refs(v)]
    return []
