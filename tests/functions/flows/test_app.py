"""The flows function over HTTP: CRUD, versions, auth, ownership and bad input."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

FLOW = {
    "name": "SMA cross",
    "settings": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"},
    "nodes": [
        {"id": "fast", "type": "indicator", "position": {"x": 0, "y": 0}, "data": {"kind": "sma", "period": 10}},
        {"id": "slow", "type": "indicator", "data": {"kind": "sma", "period": 30}},
        {"id": "up", "type": "condition", "data": {"operator": "crosses_above"}},
        {"id": "buy", "type": "action", "data": {"action": "buy", "sizePercent": 100}},
    ],
    "edges": [
        {"id": "e1", "source": "fast", "target": "up", "targetHandle": "a"},
        {"id": "e2", "source": "slow", "target": "up", "targetHandle": "b"},
        {"id": "e3", "source": "up", "target": "buy"},
    ],
}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] and body["error"]["message"]
    return body["error"]


@pytest.fixture
def alice(api):
    return api.as_user()


@pytest.fixture
def flow_id(alice) -> str:
    response = alice.post("/api/flows", json=FLOW)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_create_read_update_list_delete(alice, flow_id: str) -> None:
    got = alice.get(f"/api/flows/{flow_id}").json()
    assert got["name"] == "SMA cross" and got["nodes"][0]["position"] == {"x": 0, "y": 0}
    assert got["settings"] == FLOW["settings"] and got["created_at"].endswith("Z")

    put = alice.put(f"/api/flows/{flow_id}", json={"name": "Renamed", "settings": {"timeframe": "4h"}})
    assert put.status_code == 200 and put.json()["name"] == "Renamed"
    assert put.json()["settings"] == {"timeframe": "4h"} and len(put.json()["nodes"]) == 4

    listed = alice.get("/api/flows").json()["flows"]
    assert [(f["id"], f["node_count"], f["edge_count"]) for f in listed] == [(flow_id, 4, 3)]

    assert alice.delete(f"/api/flows/{flow_id}").json() == {"deleted": True}
    assert alice.get(f"/api/flows/{flow_id}").status_code == 404


def test_versions_as_the_reference(alice, flow_id: str) -> None:
    created = alice.post(f"/api/flows/{flow_id}/versions", json={"description": "Added RSI filter"})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "flow_id", "version", "change_description", "created_at"}
    assert body["version"] == 1 and body["flow_id"] == flow_id and body["id"].startswith("ver_")

    alice.put(f"/api/flows/{flow_id}", json={"nodes": [], "edges": []})
    assert alice.post(f"/api/flows/{flow_id}/versions").json()["version"] == 2  # description optional

    versions = alice.get(f"/api/flows/{flow_id}/versions").json()["versions"]
    assert [(v["version"], v["node_count"], v["edge_count"]) for v in versions] == [(2, 0, 0), (1, 4, 3)]
    assert set(versions[0]) == {"id", "flow_id", "version", "change_description", "node_count", "edge_count",
                                "created_at"}

    restored = alice.post(f"/api/flows/{flow_id}/versions/{body['id']}/restore")
    assert restored.json() == {"restored": True, "version": 1}
    assert len(alice.get(f"/api/flows/{flow_id}").json()["nodes"]) == 4
    assert alice.get(f"/api/flows/{flow_id}/versions").json()["versions"][0]["version"] == 3


def test_another_user_gets_404_on_every_route(api, alice, flow_id: str) -> None:
    version_id = alice.post(f"/api/flows/{flow_id}/versions", json={}).json()["id"]
    mallory = api.as_user()
    calls = [
        ("GET", f"/api/flows/{flow_id}", None),
        ("PUT", f"/api/flows/{flow_id}", {"name": "x"}),
        ("DELETE", f"/api/flows/{flow_id}", None),
        ("GET", f"/api/flows/{flow_id}/versions", None),
        ("POST", f"/api/flows/{flow_id}/versions", {"description": "x"}),
        ("POST", f"/api/flows/{flow_id}/versions/{version_id}/restore", None),
    ]
    for method, url, body in calls:
        response = mallory.request(method, url, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert error_of(response)["code"] == "not_found"
    assert mallory.get("/api/flows").json() == {"flows": []}
    assert alice.get(f"/api/flows/{flow_id}").json()["name"] == "SMA cross"


def test_unknown_version_is_404(alice, flow_id: str) -> None:
    response = alice.post(f"/api/flows/{flow_id}/versions/ver_nope/restore")
    assert response.status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"name": 5, "nodes": []}, "name"),
    ({"name": "x", "nodes": "nope"}, "nodes"),
    ({"name": "x", "nodes": [{"id": "a"}]}, "nodes.0.type"),
    ({"name": "x", "surprise": True}, "surprise"),
    ({"name": ""}, "name"),
    ({"name": "x", "settings": {"feeRate": -1}}, "settings.feeRate"),
    ({"name": "x", "nodes": [{"id": "a", "type": "price"}, {"id": "a", "type": "price"}]}, "nodes"),
])
def test_bad_input_names_the_field(alice, body: dict, field: str) -> None:
    response = alice.post("/api/flows", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert field in [d["field"] for d in error["details"]], error


def test_update_with_nothing_is_rejected(alice, flow_id: str) -> None:
    assert alice.put(f"/api/flows/{flow_id}", json={}).status_code == 422


@pytest.mark.parametrize("content, content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"name=x", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
])
def test_non_json_bodies_are_4xx(alice, content: bytes, content_type: str) -> None:
    response = alice.post("/api/flows", content=content, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text
    error_of(response)


@pytest.mark.parametrize(("headers", "named"), [
    ({"Content-Type": "application/x-www-form-urlencoded"}, "is 'application/x-www-form-urlencoded'"),  # curl -d
    ({"Content-Type": "text/plain; charset=utf-8"}, "is 'text/plain'"),
    ({}, "is missing"),
])
def test_a_json_body_without_its_content_type_says_which_header_to_send(alice, flow_id: str, headers, named) -> None:
    """FastAPI reads a body as JSON only when its Content-Type says so (a cross-site form cannot
    pass for JSON); the answer names the header instead of calling the JSON object not one."""
    for response in (alice.put(f"/api/flows/{flow_id}", content=b'{"name": "v2"}', headers=headers),
                     alice.post("/api/engine/start", content=b'{"flowId": "x", "mode": "paper"}', headers=headers)):
        assert response.status_code == 400, response.text
        assert error_of(response) == {"code": "bad_request", "message": (
            f"Send the request body as JSON with the header Content-Type: application/json "
            f"(this request's Content-Type {named}).")}


def test_oversized_body_is_413(alice) -> None:
    big = {"name": "x", "nodes": [{"id": f"n{i}", "type": "price", "data": {"pad": "x" * 4000}} for i in range(300)]}
    response = alice.post("/api/flows", json=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_oversized_body_without_content_length_is_413(alice) -> None:
    def chunks():
        for _ in range(300):
            yield b"x" * 4096

    response = alice.post("/api/flows", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def _cookie(name: str, token: str) -> str:
    session = json.dumps({"access_token": token, "token_type": "bearer"})
    return f"{name}=base64-{base64.urlsafe_b64encode(session.encode()).decode().rstrip('=')}"


def test_supabase_cookie_signs_in(api) -> None:
    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET, get_settings

    user = uuid.uuid4()
    name = get_settings().auth_cookie_name
    assert name == "sb-127-auth-token"
    cookie = _cookie(name, issue_dev_token(user, DEV_JWT_SECRET))
    created = api.client.post("/api/flows", json=FLOW, headers={"Cookie": cookie})
    assert created.status_code == 201
    assert api.client.get(f"/api/flows/{created.json()['id']}", headers={"Cookie": cookie}).status_code == 200


@pytest.mark.parametrize("headers", [
    {},
    {"Cookie": "sb-127-auth-token=base64-eyJub3QiOiJ2YWxpZA"},
    {"Cookie": "sb-127-auth-token=base64-%%%"},
    {"Cookie": "sb-127-auth-token.0=base64-eyJhY2Nlc3NfdG9rZW4iOiJ"},
    {"Authorization": "Bearer not.a.jwt"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_missing_or_broken_credentials_are_401_json(api, headers: dict) -> None:
    response = api.client.get("/api/flows", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_expired_token_is_401(api) -> None:
    from capandex.auth import issue_dev_token
    from capandex.config import DEV_JWT_SECRET

    token = issue_dev_token(uuid.uuid4(), DEV_JWT_SECRET, ttl_seconds=-60)
    response = api.client.get("/api/flows", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in error_of(response)["message"]


def test_openapi_and_docs_need_no_auth(api) -> None:
    document = api.client.get("/api/openapi.json").json()
    assert "/api/flows/{flowId}/versions" in document["paths"]
    assert api.client.get("/api/docs").status_code == 200


def test_nul_characters_are_4xx_not_500(alice, flow_id: str) -> None:
    """Postgres cannot store NUL: a NUL in a body field, a path id or a query is refused up front."""
    body = alice.post("/api/flows", json={"name": "a\u0000b"})
    assert body.status_code == 422 and error_of(body)["details"][0]["field"] == "name"
    nested = alice.post("/api/flows", json={"name": "x", "nodes": [{"id": "a", "type": "price",
                                                                     "data": {"note": "\u0000"}}]})
    assert nested.status_code == 422
    assert alice.get("/api/flows/flow_%00").status_code == 400
    assert alice.get(f"/api/flows/{flow_id}/versions?x=%00").status_code == 400
    assert alice.get(f"/api/flows/{flow_id}").status_code == 200


def test_flows_per_user_are_capped(api, monkeypatch) -> None:
    from capandex.flows import repository

    monkeypatch.setattr(repository, "MAX_FLOWS_PER_USER", 3)
    user, other = api.as_user(), api.as_user()
    assert [user.post("/api/flows", json=FLOW).status_code for _ in range(3)] == [201] * 3
    refused = user.post("/api/flows", json=FLOW)
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == ("You have 3 flows; the limit is 3. To add another, delete a "
                                                  "flow you no longer need.")
    assert other.post("/api/flows", json=FLOW).status_code == 201
    assert len(user.get("/api/flows").json()["flows"]) == 3


def test_flow_documents_are_capped_in_size(alice, flow_id: str) -> None:
    from capandex.flows.repository import MAX_DOCUMENT_BYTES

    # under the request body limit (1 MiB), over the document's: on create and on update
    nodes = [{"id": f"n{i}", "type": "indicator", "data": {"kind": "sma", "period": 10, "note": "x" * 700}}
             for i in range(400)]
    created = alice.post("/api/flows", json={**FLOW, "nodes": nodes})
    assert created.status_code == 413, created.text
    error = created.json()["error"]
    assert f"the limit is {MAX_DOCUMENT_BYTES:,} bytes" in error["message"] and error["details"][0]["field"] == "body"
    updated = alice.put(f"/api/flows/{flow_id}", json={"nodes": nodes})
    assert updated.status_code == 413
    assert len(alice.get(f"/api/flows/{flow_id}").json()["nodes"]) == 4
    assert [f["id"] for f in alice.get("/api/flows").json()["flows"]] == [flow_id]
