"""The chat stream over a real socket: uvicorn serving the gateway as ``capandex serve`` does.

Proves that nothing buffers the answer (the first event reaches the client while the upstream
is still holding the rest of its stream) and that a client that goes away leaves its answer
saved as partial.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Api
from tests.utils.anthropic_server import Gate, partial_reply, text_reply
from tests.utils.chat import make_flow, save_key, saved_messages

ASK = [{"role": "user", "content": "Explain the crossover."}]


@pytest.fixture
def server(chat_env) -> Iterator[str]:
    """uvicorn on a free port with the gateway, in a thread (what ``capandex serve`` runs)."""
    import anthropic  # noqa: F401  (its first import takes seconds under load: not what these tests time)
    import uvicorn

    from capandex.api.gateway import Gateway

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(Gateway(["chat"]), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(5)


def open_transactions() -> int:
    """Other client sessions of the test database with a transaction open right now (Postgres;
    autovacuum workers, which also show a transaction, are not ours)."""
    from sqlalchemy import text

    from capandex.db.session import get_engine

    with get_engine().connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                                 "AND backend_type = 'client backend'")).scalar_one()


@pytest.fixture
def user(chat_env):
    client = Api(None).as_user()
    save_key(client.id)
    return client


def test_first_chunk_arrives_before_upstream_finishes(server, user, upstream):
    gate = Gate()
    upstream.script(text_reply("First words", gate, " and the rest."))
    with httpx.Client(base_url=server, timeout=10) as http, \
            http.stream("POST", "/api/chat", json={"messages": ASK}, headers=user.auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == 'data: {"text":"First words"}'
        # The upstream is still holding its stream at the gate: the chunk was not buffered.
        assert not upstream.finished.is_set()
        assert open_transactions() == 0  # and no database transaction is held while it streams
        gate.event.set()
        rest = [line for line in lines if line]
    assert rest == ['data: {"text":" and the rest."}', "data: [DONE]"]
    assert upstream.finished.wait(5)  # its handler marks it just after the last write


def test_client_disconnect_saves_the_answer_as_partial(server, user, upstream):
    flow_id = make_flow(user.id)
    gate = Gate()
    upstream.script(partial_reply("Half of it", gate, " never seen"))
    with httpx.Client(base_url=server, timeout=10) as http, \
            http.stream("POST", "/api/chat", json={"messages": ASK, "flowId": flow_id}, headers=user.auth) as response:
        assert next(response.iter_lines()) == 'data: {"text":"Half of it"}'
    # the client is gone; the server notices, closes the upstream request and saves what was sent
    deadline = time.monotonic() + 10
    while len(saved_messages(user.id, flow_id)) < 2:
        assert time.monotonic() < deadline, "the partial answer was not saved"
        time.sleep(0.05)
    user_message, assistant = saved_messages(user.id, flow_id)
    assert (user_message["role"], user_message["content"]) == ("user", ASK[0]["content"])
    assert (assistant["role"], assistant["content"], assistant["partial"]) == ("assistant", "Half of it", True)
    gate.event.set()
    assert upstream.client_gone.wait(5)  # our server had closed its upstream connection
