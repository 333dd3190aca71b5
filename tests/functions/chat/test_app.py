"""POST /api/chat (SSE), GET/DELETE /api/chat/messages, through the gateway on Postgres, with the
real anthropic SDK talking to the loopback Anthropic server."""

from __future__ import annotations

import uuid

import pytest

from capandex import telemetry
from tests.utils.anthropic_server import (
    Cut,
    ErrorEvent,
    StreamReply,
    partial_reply,
    status_reply,
    text_reply,
    tool_reply,
)
from tests.utils.chat import GOOD_KEY, key_status, make_flow, save_key, saved_messages, sma_flow, sse_payloads

ASK = [{"role": "user", "content": "Why does my flow not trade?"}]
ANTHROPIC_ERRORS = (telemetry.Metric.UPSTREAM_ERRORS, (("upstream", "anthropic"),))


@pytest.fixture
def user(api):
    client = api.as_user()
    save_key(client.id)
    return client


def test_streams_text_deltas_as_sse_lines_then_done(api, user, upstream):
    upstream.script(text_reply("I can help", " you with", " that strategy."))
    response = user.post("/api/chat", json={"messages": ASK, "flowContext": sma_flow()})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text == ('data: {"text":"I can help"}\n\n'
                             'data: {"text":" you with"}\n\n'
                             'data: {"text":" that strategy."}\n\n'
                             "data: [DONE]\n\n")


def test_request_to_anthropic_carries_key_model_and_compact_flow(api, user, upstream, configure, chat_env):
    configure(**chat_env, ANTHROPIC_MODEL="claude-sonnet-4-6")
    upstream.script(text_reply("ok"))
    user.post("/api/chat", json={"messages": ASK, "flowContext": sma_flow()})
    sent = upstream.requests[0]
    assert sent.api_key == GOOD_KEY
    assert sent.body["model"] == "claude-sonnet-4-6"
    assert sent.body["stream"] is True
    assert sent.body["messages"] == ASK
    assert [t["name"] for t in sent.body["tools"]] == ["propose_flow_change"]
    system = sent.body["system"]
    assert "fast: indicator sma period=10" in system
    assert "slow -> up.b" in system
    assert "settings: exchange=binance symbol=BTC/USDT timeframe=1h" in system
    assert "no investment advice" in system.lower() or "give no investment advice" in system
    assert '"position"' not in system  # UI state is not sent


def test_the_sdk_client_is_built_off_the_event_loop(api, user, upstream, monkeypatch):
    """Importing anthropic takes seconds on a cold start: on the loop it would stall other streams."""
    import asyncio

    from capandex.chat import service

    built_on_loop = []

    def make_client(*args):
        try:
            asyncio.get_running_loop()
            built_on_loop.append(True)
        except RuntimeError:
            built_on_loop.append(False)
        return real(*args)

    real = service.make_client
    monkeypatch.setattr(service, "make_client", make_client)
    upstream.script(text_reply("ok"))
    assert user.post("/api/chat", json={"messages": ASK}).status_code == 200
    assert built_on_loop == [False]


def test_saved_flow_is_the_context_when_the_editor_sends_none(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(text_reply("ok"))
    assert user.post("/api/chat", json={"messages": ASK, "flowId": flow_id}).status_code == 200
    assert "up -> buy" in upstream.requests[0].body["system"]


def test_persists_user_and_assistant_messages_with_flow_id(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(text_reply("Your RSI ", "never drops below 30."))
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}, *ASK]
    user.post("/api/chat", json={"messages": history, "flowId": flow_id})
    listed = user.get(f"/api/chat/messages?flowId={flow_id}").json()["messages"]
    assert [(m["role"], m["content"], m["partial"]) for m in listed] == [
        ("user", ASK[0]["content"], False), ("assistant", "Your RSI never drops below 30.", False)]
    assert all(m["id"].startswith("msg_") and m["created_at"].endswith("Z") for m in listed)


def test_midstream_error_event_becomes_error_then_done_and_partial_is_saved(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(partial_reply("The warm-up ", "of SMA 30", ErrorEvent("overloaded_error", "Overloaded")))
    response = user.post("/api/chat", json={"messages": ASK, "flowId": flow_id})
    assert response.status_code == 200
    payloads = sse_payloads(response.text)
    assert payloads[:2] == [{"text": "The warm-up "}, {"text": "of SMA 30"}]
    assert payloads[2]["error"]["code"] == "upstream_unavailable"
    assert "Overloaded" in payloads[2]["error"]["message"]
    assert payloads[3:] == ["[DONE]"]
    assistant = saved_messages(user.id, flow_id)[-1]
    assert (assistant["role"], assistant["content"]) == ("assistant", "The warm-up of SMA 30")
    assert assistant["partial"] is True


def test_stream_cut_half_way_is_an_error_event_and_partial(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(partial_reply("Half an ", "answer", Cut()))
    payloads = sse_payloads(user.post("/api/chat", json={"messages": ASK, "flowId": flow_id}).text)
    assert payloads[:2] == [{"text": "Half an "}, {"text": "answer"}]
    assert payloads[2]["error"]["code"] == "upstream_unavailable"
    assert payloads[3] == "[DONE]"
    assert saved_messages(user.id, flow_id)[-1]["partial"] is True


def test_bad_saved_key_is_400_invalid_credentials(api, upstream):
    client = api.as_user()
    save_key(client.id, "sk-ant-api03-revoked")
    flow_id = make_flow(client.id)
    response = client.post("/api/chat", json={"messages": ASK, "flowId": flow_id})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_credentials"
    assert "saved API key" in error["message"]
    assert "revoked" not in response.text  # the key never appears
    assert saved_messages(client.id, flow_id) == []  # nothing saved for a request that never started
    assert key_status(client.id)["isValid"] is False  # GET /api/ai-keys shows the key must be replaced


def test_anthropic_403_also_marks_the_saved_key_invalid(api, user, upstream):
    upstream.script(status_reply(403, "Your API key does not have permission to use the specified resource."))
    with telemetry.recording("chat") as counts:
        response = user.post("/api/chat", json={"messages": ASK})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_credentials")
    assert key_status(user.id)["isValid"] is False
    assert counts[ANTHROPIC_ERRORS] == 0  # the user's key, not an upstream failure operators must see


def test_other_failures_leave_the_key_status_alone(api, user, upstream):
    upstream.script(status_reply(529), text_reply("ok"))
    assert user.post("/api/chat", json={"messages": ASK}).status_code == 503
    assert user.post("/api/chat", json={"messages": ASK}).status_code == 200
    assert key_status(user.id)["isValid"] is None


def test_anthropic_429_is_429_with_its_retry_after(api, user, upstream):
    upstream.script(status_reply(429, retry_after=17))
    response = user.post("/api/chat", json={"messages": ASK})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert response.json()["error"]["code"] == "rate_limited"


def test_anthropic_529_overloaded_is_503(api, user, upstream):
    upstream.script(status_reply(529, retry_after=5))
    with telemetry.recording("chat") as counts:
        response = user.post("/api/chat", json={"messages": ASK})
    assert counts[ANTHROPIC_ERRORS] == 1
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert response.headers["retry-after"] == "5"


def test_sdk_retries_529_before_the_first_byte_when_configured(api, user, upstream, configure, chat_env):
    configure(**{**chat_env, "ANTHROPIC_MAX_RETRIES": "1"})
    upstream.script(status_reply(529, retry_after=0), text_reply("recovered"))
    response = user.post("/api/chat", json={"messages": ASK})
    assert sse_payloads(response.text) == [{"text": "recovered"}, "[DONE]"]
    assert len(upstream.requests) == 2


def test_unreachable_anthropic_is_503(api, user, configure, chat_env):
    configure(**{**chat_env, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    response = user.post("/api/chat", json={"messages": ASK})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_no_saved_key_is_400_with_a_clear_message(api, upstream):
    response = api.as_user().post("/api/chat", json={"messages": ASK})
    assert response.status_code == 400
    assert "No Anthropic API key is saved" in response.json()["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(("messages", "field"), [
    ([], "messages"),
    ([{"role": "system", "content": "x"}], "messages.0.role"),
    ([{"role": "user", "content": "   "}], "messages.0.content"),
    ([{"role": "user", "content": "x" * 20_001}], "messages.0.content"),
    ([{"role": "user"}], "messages.0.content"),
    ([{"role": "user", "content": "x", "name": "me"}], "messages.0.name"),
    ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}], "messages.0.role"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "messages.1.role"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "messages.1.role"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 50
     + [{"role": "user", "content": "c"}], "messages"),
])
def test_invalid_messages_are_4xx_naming_the_field(api, user, upstream, messages, field):
    response = user.post("/api/chat", json={"messages": messages})
    assert response.status_code in (400, 422)
    fields = [d["field"] for d in response.json()["error"].get("details", [])]
    assert field in fields
    assert upstream.requests == []


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "nul\u0000here"}]}, "messages.2.content"),
    ({"messages": ASK, "flowId": "flow_\u0000"}, "flowId"),
    ({"messages": ASK, "flowContext": {"nodes": [{"id": "a\u0000", "type": "price", "data": {}}]}},
     "flowContext.nodes.0.id"),
])
def test_nul_characters_are_422_naming_the_exact_field(api, user, upstream, body, field):
    response = user.post("/api/chat", json=body)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert upstream.requests == []


def test_conversation_size_limit_names_messages(api, user, upstream):
    big = "x" * 19_000
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": big} for i in range(11)]
    response = user.post("/api/chat", json={"messages": messages})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["messages"]


def test_bad_flow_context_names_the_field(api, user):
    response = user.post("/api/chat", json={"messages": ASK, "flowContext": {"nodes": [{"type": "price"}]}})
    assert response.status_code == 422
    assert "flowContext.nodes.0.id" in [d["field"] for d in response.json()["error"]["details"]]


def test_another_users_flow_is_404_everywhere(api, user, upstream):
    other = api.as_user()
    save_key(other.id)
    flow_id = make_flow(other.id)
    assert user.post("/api/chat", json={"messages": ASK, "flowId": flow_id}).status_code == 404
    assert user.get(f"/api/chat/messages?flowId={flow_id}").status_code == 404
    assert user.delete(f"/api/chat/messages?flowId={flow_id}").status_code == 404
    assert user.get("/api/chat/messages?flowId=flow_missing").status_code == 404
    assert upstream.requests == []


def test_messages_need_flow_id_and_auth(api):
    assert api.as_user().get("/api/chat/messages").status_code == 422
    assert api.client.get(f"/api/chat/messages?flowId={uuid.uuid4().hex}").status_code == 401
    assert api.client.post("/api/chat", json={"messages": ASK}).status_code == 401


def test_delete_clears_only_that_flows_chat(api, user, upstream):
    first, second = make_flow(user.id), make_flow(user.id)
    upstream.script(text_reply("one"), text_reply("two"))
    user.post("/api/chat", json={"messages": ASK, "flowId": first})
    user.post("/api/chat", json={"messages": ASK, "flowId": second})
    assert user.delete(f"/api/chat/messages?flowId={first}").json() == {"success": True}
    assert user.get(f"/api/chat/messages?flowId={first}").json() == {"messages": []}
    assert len(user.get(f"/api/chat/messages?flowId={second}").json()["messages"]) == 2


def test_rate_limit_is_429_with_retry_after(api, upstream, configure, chat_env):
    configure(**{**chat_env, "CAPANDEX_CHAT_RATE_BURST": "2", "CAPANDEX_CHAT_RATE_PER_MINUTE": "6"})
    client = api.as_user()
    save_key(client.id)
    upstream.script(text_reply("a"), text_reply("b"))
    assert client.post("/api/chat", json={"messages": ASK}).status_code == 200
    assert client.post("/api/chat", json={"messages": ASK}).status_code == 200
    limited = client.post("/api/chat", json={"messages": ASK})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 10  # one token per 10 s
    assert len(upstream.requests) == 2
    other = api.as_user()  # buckets are per user
    save_key(other.id)
    upstream.script(text_reply("c"))
    assert other.post("/api/chat", json={"messages": ASK}).status_code == 200


ADD_RSI_FILTER = {
    "summary": "Only buy when RSI(14) is below 70",
    "ops": [
        {"op": "add_node", "node": {"id": "rsi", "type": "indicator", "data": {"kind": "rsi", "period": 14}}},
        {"op": "add_node", "node": {"id": "not_hot", "type": "condition", "data": {"operator": "<", "value": 70}}},
        {"op": "add_node", "node": {"id": "both", "type": "logic", "data": {"operator": "and"}}},
        {"op": "add_edge", "edge": {"source": "rsi", "target": "not_hot", "targetHandle": "a"}},
        {"op": "remove_edge", "id": "e5"},
        {"op": "add_edge", "edge": {"source": "up", "target": "both"}},
        {"op": "add_edge", "edge": {"source": "not_hot", "target": "both"}},
        {"op": "add_edge", "edge": {"source": "both", "target": "buy"}},
    ],
}


def test_valid_flow_patch_is_streamed_and_saved(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(tool_reply(ADD_RSI_FILTER, text=["I'll add ", "an RSI filter."]))
    response = user.post("/api/chat", json={"messages": ASK, "flowId": flow_id, "flowContext": sma_flow()})
    payloads = sse_payloads(response.text)
    assert payloads[:2] == [{"text": "I'll add "}, {"text": "an RSI filter."}]
    patch = payloads[2]["flowPatch"]
    assert patch["summary"] == ADD_RSI_FILTER["summary"]
    assert patch["ops"] == ADD_RSI_FILTER["ops"]
    flow = patch["flow"]
    assert {n["id"] for n in flow["nodes"]} >= {"rsi", "not_hot", "both", "fast"}
    assert "e5" not in {e["id"] for e in flow["edges"]}
    assert flow["nodes"][0]["position"] == {"x": 0, "y": 0}  # UI state survives
    assert payloads[3:] == ["[DONE]"]
    assert len(upstream.requests) == 1  # a valid proposal ends the answer
    saved = saved_messages(user.id, flow_id)[-1]
    assert saved["flow_patch"] == patch and saved["partial"] is False
    # never applied by the server
    assert "rsi" not in [n["id"] for n in user.get(f"/api/chat/messages?flowId={flow_id}").json()["messages"]]


def test_invalid_flow_patch_is_not_streamed_and_the_model_gets_the_problems(api, user, upstream):
    bad = {"summary": "Remove the only buy", "ops": [{"op": "remove_node", "id": "buy"}]}
    upstream.script(tool_reply(bad), text_reply("Sorry, a flow needs a buy action."))
    response = user.post("/api/chat", json={"messages": ASK, "flowContext": sma_flow()})
    payloads = sse_payloads(response.text)
    assert not any("flowPatch" in p for p in payloads if isinstance(p, dict))
    texts = "".join(p["text"] for p in payloads if isinstance(p, dict) and "text" in p)
    assert "was not shown" in texts
    assert texts.endswith("Sorry, a flow needs a buy action.")
    assert payloads[-1] == "[DONE]"
    follow_up = upstream.requests[1].body["messages"]
    assert follow_up[-2]["role"] == "assistant"
    tool_use = next(b for b in follow_up[-2]["content"] if b["type"] == "tool_use")
    result = follow_up[-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"] and result["is_error"]
    assert "buy" in result["content"]


def test_repeatedly_invalid_patches_stop_after_two_follow_ups(api, user, upstream):
    bad = {"summary": "Break it", "ops": [{"op": "update_node", "id": "fast", "data": {"period": 0}}]}
    upstream.script(tool_reply(bad), tool_reply(bad), tool_reply(bad), text_reply("never sent"))
    payloads = sse_payloads(user.post("/api/chat", json={"messages": ASK, "flowContext": sma_flow()}).text)
    assert len(upstream.requests) == 3
    assert not any("flowPatch" in p for p in payloads if isinstance(p, dict))
    assert payloads[-1] == "[DONE]"


def test_malformed_tool_json_is_rejected_not_streamed(api, user, upstream):
    upstream.script(tool_reply('{"summary": "x", "ops": [{"op": "add_node"'), text_reply("Let me retry later."))
    payloads = sse_payloads(user.post("/api/chat", json={"messages": ASK, "flowContext": sma_flow()}).text)
    assert not any("flowPatch" in p for p in payloads if isinstance(p, dict))
    assert payloads[-2:] == [{"text": "Let me retry later."}, "[DONE]"]


@pytest.mark.parametrize("name", ["post_chat.json", "get_messages.json", "delete_messages.json"])
def test_events_run_through_the_handler(api, user, upstream, name):
    """events/chat/*.json (REST v1 payloads, as the streaming integration sends them) through the
    Lambda handler, with this test's user and flow."""
    import json
    from pathlib import Path

    from capandex.api.functions import load_function

    flow_id = make_flow(user.id)
    raw = (Path(__file__).parents[3] / "events" / "chat" / name).read_text()
    event = json.loads(raw.replace("flow_0123456789abcdef0123456789abcdef", flow_id))
    token = user.auth["Authorization"]
    event["headers"] = {k: (token if k.lower() == "authorization" else v) for k, v in event["headers"].items()}
    if event.get("multiValueHeaders"):
        event["multiValueHeaders"] = {k: ([token] if k.lower() == "authorization" else v)
                                      for k, v in event["multiValueHeaders"].items()}
    upstream.script(text_reply("Hello", " there."))
    result = load_function("chat").handler(event, None)
    assert result["statusCode"] == 200, result["body"]
    if name.startswith("post_chat"):
        assert result["body"] == 'data: {"text":"Hello"}\n\ndata: {"text":" there."}\n\ndata: [DONE]\n\n'
        assert "up: condition &gt; value=100" in upstream.requests[0].body["system"]
    elif name.startswith("get"):
        assert json.loads(result["body"]) == {"messages": []}
    else:
        assert json.loads(result["body"]) == {"success": True}


def test_error_event_before_any_content_is_still_an_http_status(api, user, upstream):
    upstream.script(StreamReply([ErrorEvent("overloaded_error", "Overloaded")]))
    response = user.post("/api/chat", json={"messages": ASK})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_body_ending_without_message_stop_is_an_interruption(api, user, upstream):
    flow_id = make_flow(user.id)
    upstream.script(partial_reply("Cut ", "short"))  # the chunked body ends cleanly, but too early
    payloads = sse_payloads(user.post("/api/chat", json={"messages": ASK, "flowId": flow_id}).text)
    assert payloads[:2] == [{"text": "Cut "}, {"text": "short"}]
    assert payloads[2]["error"]["code"] == "upstream_unavailable" and payloads[3] == "[DONE]"
    assert saved_messages(user.id, flow_id)[-1]["partial"] is True


def test_whitespace_in_a_message_is_kept_as_sent(api, user, upstream):
    """Pasted code keeps its indentation: the message reaches Anthropic and the history unchanged."""
    flow_id = make_flow(user.id)
    code = "Why does this fail?\n```python\n    if rsi < 30:\n        buy()\n```\n"
    upstream.script(text_reply("Because."))
    user.post("/api/chat", json={"messages": [{"role": "user", "content": code}], "flowId": flow_id})
    assert saved_messages(user.id, flow_id)[0]["content"] == code
    response = user.post("/api/chat", json={"messages": [{"role": "user", "content": "   \n  "}]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "messages.0.content"


def test_an_answer_cut_before_its_first_word_is_not_saved(api, user, upstream):
    """Nothing to keep, and an empty assistant turn would make the saved history unsendable."""
    flow_id = make_flow(user.id)
    upstream.script(partial_reply(Cut()))
    payloads = sse_payloads(user.post("/api/chat", json={"messages": ASK, "flowId": flow_id}).text)
    assert payloads[0]["error"]["code"] == "upstream_unavailable" and payloads[-1] == "[DONE]"
    assert [m["role"] for m in saved_messages(user.id, flow_id)] == ["user"]
