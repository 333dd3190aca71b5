"""Signed-out sessions cannot move money or secrets (issue 11): the money- and secret-moving routes
confirm the session with Supabase Auth (the real ``supabase_auth`` client, a loopback GoTrue); a
revoked session is 401 there while still valid locally, and an unreachable Auth is 503 for those
routes only."""

from __future__ import annotations

import uuid

import pytest

from tests.capandex.engine.factories import price_rule_flow
from tests.utils import secret_guard
from tests.utils.keys_fixtures import signed_binance  # noqa: F401
from tests.utils.supabase_auth_server import supabase_auth  # noqa: F401

HOOK = {"id": "hook", "type": "trigger", "data": {"kind": "webhook"}}


def creds() -> dict[str, str]:
    body = {"exchange": "binance", "apiKey": "ak" + uuid.uuid4().hex, "secret": "sk" + uuid.uuid4().hex}
    secret_guard.register(body["apiKey"], body["secret"])
    return body


@pytest.fixture
def alice(api, supabase_auth, signed_binance):  # noqa: F811
    user = api.as_user()
    supabase_auth.sign_in(user.auth["Authorization"].removeprefix("Bearer "), user.id)
    flow = price_rule_flow(1e12, 0.0)
    flow["nodes"].append(HOOK)
    flow["settings"] = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}
    user.flow_id = user.post("/api/flows", json={"name": "hooked", **flow}).json()["id"]
    key = creds()
    signed_binance.add_account(key["apiKey"], key["secret"], {"USDT": (100.0, 0.0)})
    user.key_id = user.post("/api/exchange-keys", json=key).json()["id"]
    user.token = user.auth["Authorization"].removeprefix("Bearer ")
    return user


def money_moves(user) -> dict[str, object]:
    """Each action that moves money or secrets, as (method, path, body)."""
    return {
        "save exchange key": ("POST", "/api/exchange-keys", creds()),
        "validate exchange key": ("POST", "/api/exchange-keys/validate", {"id": user.key_id}),
        "validate unsaved credentials": ("POST", "/api/exchange-keys/validate", creds()),
        "delete exchange key": ("DELETE", "/api/exchange-keys", {"id": user.key_id}),
        "save AI key": ("POST", "/api/ai-keys", {"apiKey": "sk-ant-api03-" + uuid.uuid4().hex}),
        "start live": ("POST", "/api/engine/start", {"flowId": user.flow_id, "mode": "live",
                                                     "exchangeKeyId": user.key_id}),
        "rotate webhook": ("POST", f"/api/flows/{user.flow_id}/webhook", None),
    }


def call(user, method: str, path: str, body):
    return user.request(method, path, json=body) if body is not None else user.request(method, path)


def test_a_signed_out_session_cannot_move_money(alice, supabase_auth, monkeypatch) -> None:  # noqa: F811
    from capandex.auth import sessions

    keys_before = alice.get("/api/exchange-keys").json()
    supabase_auth.sign_out(alice.token)  # the token stays valid locally until its exp (an hour)
    # within 30 s of the last confirmation the remembered verdict stands (the documented window) …
    assert alice.post("/api/ai-keys", json={"apiKey": "sk-ant-api03-" + uuid.uuid4().hex}).status_code == 200
    later = sessions.clock() + sessions.CONFIRM_TTL_SECONDS + 1
    monkeypatch.setattr(sessions, "clock", lambda: later)  # … and after it, Auth is asked again
    alice.delete("/api/ai-keys")
    assert alice.get("/api/flows").status_code == 200  # reading needs no confirmation
    for name, (method, path, body) in money_moves(alice).items():
        response = call(alice, method, path, body)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"] == {"code": "unauthorized",
                                            "message": "This session has ended (signed out or revoked); sign in "
                                                       "again."}
    assert alice.get("/api/exchange-keys").json() == keys_before  # nothing saved, validated or deleted
    assert alice.get("/api/ai-keys").json()["hasKey"] is False
    assert alice.get(f"/api/flows/{alice.flow_id}").status_code == 200


def test_a_live_session_acts_and_is_asked_once_per_30_seconds(alice, supabase_auth) -> None:  # noqa: F811
    calls = supabase_auth.calls
    assert alice.post("/api/ai-keys", json={"apiKey": "sk-ant-api03-" + uuid.uuid4().hex}).status_code == 200
    assert alice.post(f"/api/flows/{alice.flow_id}/webhook").status_code == 200
    assert alice.post("/api/exchange-keys", json=creds()).status_code == 201
    assert supabase_auth.calls - calls <= 1  # confirmed once (maybe already while saving the fixture's key)


def test_auth_unreachable_is_503_for_those_actions_only(alice, supabase_auth) -> None:  # noqa: F811
    from capandex.auth import sessions

    sessions.clear_cache()
    supabase_auth.status = 503
    for name, (method, path, body) in money_moves(alice).items():
        response = call(alice, method, path, body)
        assert response.status_code == 503, (name, response.text)
        assert response.json()["error"]["code"] == "upstream_unavailable"
    # everything else keeps working on local verification
    assert alice.get("/api/flows").status_code == 200
    assert alice.get("/api/exchange-keys").status_code == 200
    assert alice.post("/api/engine/start", json={"flowId": alice.flow_id, "mode": "paper"}).status_code == 200
