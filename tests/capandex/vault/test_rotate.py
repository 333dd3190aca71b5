"""``capandex vault rotate``: a new master key version, every data key re-wrapped, no field
ciphertext touched, every secret still readable."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from capandex.db.schema import ai_keys, exchange_keys
from capandex.exchanges import Credentials
from capandex.keys import ai, exchange
from tests.utils import secret_guard


@pytest.fixture
def db(configure, database_url: str):
    configure(DATABASE_URL=database_url)
    from capandex.db.session import transaction

    return transaction


def _sealed(db, users: list[uuid.UUID]) -> dict[str, dict]:
    # only this test's users: on Postgres the session database holds other tests' rows too
    with db() as conn:
        return {row.id: row.sealed for table in (exchange_keys, ai_keys)
                for row in conn.execute(select(table.c.id, table.c.sealed).where(table.c.user_id.in_(users)))}


def test_rotate_rewraps_everything_and_secrets_still_open(db, capsys) -> None:
    from capandex.cli import main

    users = [uuid.uuid4(), uuid.uuid4()]
    saved: dict[tuple[uuid.UUID, str], Credentials] = {}
    ai_saved = {}
    for user in users:
        with db(user) as conn:
            for _ in range(2):
                c = Credentials("ak" + uuid.uuid4().hex, "sk" + uuid.uuid4().hex)
                secret_guard.register(c.api_key, c.secret)
                key_id = exchange.create_exchange_key(conn, user_id=user, exchange="binance", credentials=c)["id"]
                saved[(user, key_id)] = c
            ai_saved[user] = "sk-ant-" + uuid.uuid4().hex
            secret_guard.register(ai_saved[user])
            ai.save_ai_key(conn, user_id=user, api_key=ai_saved[user])
    before = _sealed(db, users)

    assert main(["vault", "status"]) == 0
    assert "current key: local:1" in capsys.readouterr().out
    # rows of other tests (Postgres) were sealed under other key files: reported, not fatal
    assert main(["vault", "rotate"]) in (0, 1)
    out = capsys.readouterr().out
    assert "new master key version 2" in out and "re-wrapped" in out
    assert not set(before) & set(out.replace(",", " ").split())  # none of ours failed
    after = _sealed(db, users)
    assert set(after) == set(before)
    for record_id, doc in after.items():
        assert doc["wrap"] == {"by": "local", "version": 2}
        assert doc["fields"] == before[record_id]["fields"]  # field ciphertexts untouched
        assert doc["key"] != before[record_id]["key"]
    for (user, key_id), c in saved.items():
        with db(user) as conn:
            assert exchange.load_credentials(conn, user_id=user, key_id=key_id) == ("binance", c)
    for user, key in ai_saved.items():
        with db(user) as conn:
            assert ai.load_ai_key(conn, user_id=user) == key
    assert not [s for c in saved.values() for s in (c.api_key, c.secret) if s in out]

    assert main(["vault", "rotate", "--no-new-key"]) in (0, 1)
    assert "re-wrapped 0 record(s)" in capsys.readouterr().out
    assert main(["vault", "status"]) == 0
    assert "current key: local:2" in capsys.readouterr().out


def test_rotate_reports_unopenable_records_and_goes_on(configure, tmp_path, capsys) -> None:
    from sqlalchemy import update

    from capandex.cli import main

    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}")
    from capandex.db.session import transaction

    user = uuid.uuid4()
    with transaction(user) as conn:
        ids = [exchange.create_exchange_key(conn, user_id=user, exchange="binance",
                                            credentials=Credentials(f"ak{i}" * 4, f"sk{i}" * 4))["id"]
               for i in range(2)]
    with transaction() as conn:  # the first row's sealed value moved onto the second: unopenable there
        first = conn.execute(select(exchange_keys.c.sealed).where(exchange_keys.c.id == ids[0])).scalar_one()
        conn.execute(update(exchange_keys).where(exchange_keys.c.id == ids[1]).values(sealed=first))
    assert main(["vault", "rotate"]) == 1
    out = capsys.readouterr().out
    assert "re-wrapped 1 record(s)" in out and f"1 could not be re-wrapped: {ids[1]}" in out
