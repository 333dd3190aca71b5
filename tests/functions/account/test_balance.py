"""``GET /api/dashboard/balance``: stablecoins of every validated key, concurrently, failures
isolated, cached briefly; keys that did not pass validation cost no exchange call."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from capandex.db.session import transaction
from capandex.keys.exchange import record_validation
from tests.utils import secret_guard
from tests.utils.keys_fixtures import signed_binance  # noqa: F401


def save(user, signed, balances=None, *, register: bool = True, validate: bool = True, exchange: str = "binance",
         **extra) -> str:
    """Save a key (known to the loopback exchange unless ``register`` is False) and, unless
    ``validate`` is False, validate it (the balance route only asks the exchange about validated keys)."""
    creds = {"apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(*creds.values())
    if register:
        signed.add_account(creds["apiKey"], creds["secret"], balances or {})
    response = user.post("/api/exchange-keys", json={"exchange": exchange, **creds, **extra})
    assert response.status_code == 201, response.text
    key_id = response.json()["id"]
    signed.last_api_key = creds["apiKey"]
    if validate:
        checked = user.post("/api/exchange-keys/validate", json={"id": key_id})
        assert checked.status_code == 200 and checked.json()["valid"] is register, checked.text
    return key_id


def account_calls(signed) -> int:
    """Signed account requests the loopback exchange answered or refused so far."""
    return sum(path == "/api/v3/account" for path, _ in signed.verified + signed.rejected)


@pytest.fixture
def user(api):
    return api.as_user(uuid.uuid4())


def test_no_keys(user) -> None:
    assert user.get("/api/dashboard/balance").json() == {"totalUsd": 0.0, "exchanges": []}


def test_totals_and_isolated_failures(user, signed_binance) -> None:  # noqa: F811
    main = save(user, signed_binance, {"USDT": (10_000.0, 0.0), "BTC": (3.0, 0.0)}, label="Main Account")
    trading = save(user, signed_binance, {"USDC": (5000.0, 200.0), "DAI": (34.5, 0.0), "ETH": (1.0, 0.0)},
                   label="Trading")
    broken = save(user, signed_binance, register=False, label="Revoked")  # the exchange does not know it
    response = user.get("/api/dashboard/balance")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalUsd"] == 15234.5
    by_id = {e["id"]: e for e in body["exchanges"]}
    assert by_id[main] == {"id": main, "exchange": "binance", "label": "Main Account", "balanceUsd": 10000.0,
                           "error": None}
    assert by_id[trading]["balanceUsd"] == 5234.5
    assert by_id[broken]["balanceUsd"] is None and "rejected this key" in by_id[broken]["error"]
    assert [e["id"] for e in body["exchanges"]] == [main, trading, broken]  # oldest key first


def test_only_validated_keys_reach_the_exchange(user, signed_binance) -> None:  # noqa: F811
    """The reproduction: saved candidate keys were each tried on the exchange by the balance route,
    around the validation rate limit. Unvalidated keys are listed without a call."""
    good = save(user, signed_binance, {"USDT": (5.0, 0.0)})
    candidates = [save(user, signed_binance, validate=False, register=i % 2 == 0) for i in range(12)]
    before = account_calls(signed_binance)
    body = user.get("/api/dashboard/balance").json()
    assert account_calls(signed_binance) - before == 1  # the validated key only
    by_id = {e["id"]: e for e in body["exchanges"]}
    assert by_id[good]["balanceUsd"] == 5.0 and body["totalUsd"] == 5.0
    for key_id in candidates:
        assert by_id[key_id] == {"id": key_id, "exchange": "binance", "label": "Binance", "balanceUsd": None,
                                 "error": "Not validated: validate this key first (POST /api/exchange-keys/validate)."}


def test_balances_are_cached_briefly(user, signed_binance) -> None:  # noqa: F811
    from capandex.keys import balance

    save(user, signed_binance, {"USDT": (5.0, 0.0)})
    before = account_calls(signed_binance)
    for _ in range(5):
        assert user.get("/api/dashboard/balance").json()["totalUsd"] == 5.0
    assert account_calls(signed_binance) - before == 1
    balance.clear_cache()  # as if the 30 s had passed
    signed_binance.accounts[signed_binance.last_api_key].balances["USDT"] = (6.0, 0.0)
    assert user.get("/api/dashboard/balance").json()["totalUsd"] == 6.0
    assert account_calls(signed_binance) - before == 2


def test_a_key_validated_again_is_asked_anew(user, signed_binance) -> None:  # noqa: F811
    """The cache holds an outcome for the validation it was read under (``validated_at``), so a key
    validated since is asked again, whichever function (container) validated it."""
    key = save(user, signed_binance, {"USDT": (5.0, 0.0)})
    assert user.get("/api/dashboard/balance").json()["totalUsd"] == 5.0
    signed_binance.accounts[signed_binance.last_api_key].balances["USDT"] = (6.0, 0.0)
    assert user.get("/api/dashboard/balance").json()["totalUsd"] == 5.0  # cached
    assert user.post("/api/exchange-keys/validate", json={"id": key}).json()["valid"] is True
    assert user.get("/api/dashboard/balance").json()["totalUsd"] == 6.0


def test_a_key_the_exchange_rejects_is_not_tried_again(user, signed_binance) -> None:  # noqa: F811
    save(user, signed_binance, {"USDT": (5.0, 0.0)})
    del signed_binance.accounts[signed_binance.last_api_key]  # revoked on the exchange since validation
    first = user.get("/api/dashboard/balance").json()["exchanges"][0]
    assert first["balanceUsd"] is None and "rejected the API key" in first["error"]
    assert user.get("/api/exchange-keys").json()["keys"][0]["isValid"] is False
    from capandex.keys import balance

    balance.clear_cache()
    before = account_calls(signed_binance)
    again = user.get("/api/dashboard/balance").json()["exchanges"][0]
    assert "rejected this key at its last check" in again["error"] and account_calls(signed_binance) == before


def test_unreachable_exchange_is_listed_with_an_error(user, signed_binance, configure) -> None:  # noqa: F811
    ok = save(user, signed_binance, {"USDT": (7.0, 0.0)})
    down = save(user, signed_binance, {"USDT": (1.0, 0.0)}, exchange="kraken", validate=False)
    with transaction(user.id) as conn:  # validated while kraken answered; unreachable now
        record_validation(conn, user_id=user.id, key_id=down, valid=True)
    configure(CAPANDEX_EXCHANGE_URLS=json.dumps({"binance": signed_binance.server.url, "kraken": "http://127.0.0.1:9"}))
    body = user.get("/api/dashboard/balance").json()
    by_id = {e["id"]: e for e in body["exchanges"]}
    assert body["totalUsd"] == 7.0 and by_id[ok]["balanceUsd"] == 7.0
    assert by_id[down]["exchange"] == "kraken" and by_id[down]["balanceUsd"] is None and by_id[down]["error"]


def test_each_exchange_has_a_time_limit(user, signed_binance, configure) -> None:  # noqa: F811
    configure(CAPANDEX_BALANCE_TIMEOUT_S="0.5")
    fast = save(user, signed_binance, {"USDT": (1.0, 0.0)})
    slow = save(user, signed_binance, {"USDT": (2.0, 0.0)})
    signed_binance.accounts[signed_binance.last_api_key].delay_s = 3.0
    started = time.monotonic()
    body = user.get("/api/dashboard/balance").json()
    elapsed = time.monotonic() - started
    by_id = {e["id"]: e for e in body["exchanges"]}
    assert elapsed < 2.5  # not the slow exchange's 3 s
    assert by_id[fast]["balanceUsd"] == 1.0 and body["totalUsd"] == 1.0
    assert by_id[slow]["balanceUsd"] is None and "0.5 s" in by_id[slow]["error"]


def test_only_own_keys_count(api, signed_binance) -> None:  # noqa: F811
    owner, other = api.as_user(uuid.uuid4()), api.as_user(uuid.uuid4())
    save(owner, signed_binance, {"USDT": (99.0, 0.0)})
    assert other.get("/api/dashboard/balance").json() == {"totalUsd": 0.0, "exchanges": []}
    assert owner.get("/api/dashboard/balance").json()["totalUsd"] == 99.0


def test_requires_sign_in(api) -> None:
    assert api.client.get("/api/dashboard/balance").status_code == 401


def test_the_balance_books_the_budget_the_keys_live_executions_share(user, signed_binance) -> None:  # noqa: F811
    """A key's balance read is one more request with the key: it books the key's budget
    (capandex.live.budget), so while the exchange wants the key to wait — a live tick on it met a 418
    with Retry-After 30 s — the dashboard sends nothing and says so; later, it reads and books a token."""
    from sqlalchemy import select

    from capandex.db.schema import rate_limits
    from capandex.exchanges.limits import key_limit
    from capandex.keys.balance import clear_cache
    from capandex.live.budget import KeyBudget

    key = save(user, signed_binance, {"USDT": (5.0, 0.0)})
    budget = KeyBudget(user.id, key, key_limit("binance"))
    with transaction() as conn:
        budget.bucket.drain(conn, user_id=user.id, seconds=30)
    before = account_calls(signed_binance)
    (entry,) = user.get("/api/dashboard/balance").json()["exchanges"]
    assert account_calls(signed_binance) == before  # not one request while the key must wait
    assert entry["balanceUsd"] is None and "rate limit" in entry["error"].lower()
    with transaction() as conn:
        conn.execute(rate_limits.delete().where(rate_limits.c.user_id == user.id))  # the wait is over
    clear_cache()
    (entry,) = user.get("/api/dashboard/balance").json()["exchanges"]
    assert entry["balanceUsd"] == 5.0 and account_calls(signed_binance) == before + 1
    with transaction() as conn:
        tokens = conn.execute(select(rate_limits.c.tokens).where(rate_limits.c.user_id == user.id)).scalar_one()
    assert tokens == pytest.approx(key_limit("binance").burst - 1, abs=0.5)  # the read took its token
