"""Exchange keys in the database (SQLite and Postgres): sealed at rest, owner-scoped, bound to
their row, safe under concurrent saves."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from capandex.db.schema import ai_keys, exchange_keys, exchanges
from capandex.errors import BadRequest, NotFound
from capandex.exchanges import Credentials
from capandex.keys import exchange as keys
from capandex.vault import VaultError
from tests.utils import secret_guard


def creds(passphrase: str | None = None) -> Credentials:
    c = Credentials("ak-" + uuid.uuid4().hex, "sk-" + uuid.uuid4().hex, passphrase)
    secret_guard.register(c.api_key, c.secret, passphrase)
    return c


@pytest.fixture
def db(configure, database_url: str):
    configure(DATABASE_URL=database_url)
    from capandex.db.session import transaction

    return transaction


def save(db, user: uuid.UUID, exchange: str = "binance", c: Credentials | None = None, **kw) -> tuple[str, Credentials]:
    c = c or creds()
    with db(user) as conn:
        return keys.create_exchange_key(conn, user_id=user, exchange=exchange, credentials=c, **kw)["id"], c


def test_save_list_load_delete(db) -> None:
    user = uuid.uuid4()
    key_id, c = save(db, user, label="Main Account")
    assert key_id.startswith("key_")
    with db(user) as conn:
        listed = keys.list_exchange_keys(conn, user_id=user)
        assert [(k["id"], k["exchange"], k["label"], k["isValid"]) for k in listed] == \
            [(key_id, "binance", "Main Account", None)]
        assert listed[0]["createdAt"].endswith("Z")
        assert keys.load_credentials(conn, user_id=user, key_id=key_id) == ("binance", c)
        stored = conn.execute(select(exchange_keys).where(exchange_keys.c.id == key_id)).one()
    text = json.dumps(stored.sealed) + str(stored)
    assert c.secret not in text and c.api_key not in text
    with db(user) as conn:
        keys.delete_exchange_key(conn, user_id=user, key_id=key_id)
    with db(user) as conn:
        assert keys.list_exchange_keys(conn, user_id=user) == []
        assert conn.execute(select(exchange_keys.c.id).where(exchange_keys.c.id == key_id)).first() is None
        with pytest.raises(NotFound):
            keys.load_credentials(conn, user_id=user, key_id=key_id)


def test_label_defaults_to_exchange_name(db) -> None:
    user = uuid.uuid4()
    save(db, user, exchange="kraken")
    with db(user) as conn:
        assert keys.list_exchange_keys(conn, user_id=user)[0]["label"] == "Kraken"


def test_another_users_key_is_not_found(db) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    key_id, _ = save(db, owner)
    with db(other) as conn:
        assert keys.list_exchange_keys(conn, user_id=other) == []
        with pytest.raises(NotFound):
            keys.load_credentials(conn, user_id=other, key_id=key_id)
        with pytest.raises(NotFound):
            keys.delete_exchange_key(conn, user_id=other, key_id=key_id)
        assert keys.record_validation(conn, user_id=other, key_id=key_id, valid=False) is False
    with db(owner) as conn:
        assert keys.load_credentials(conn, user_id=owner, key_id=key_id)[0] == "binance"


def test_unsupported_exchange_and_missing_passphrase(db) -> None:
    user = uuid.uuid4()
    with pytest.raises(BadRequest) as err:
        save(db, user, exchange="ftx")
    assert "binance, okx, bybit, mexc, coinbase, kraken" in err.value.message
    assert err.value.details == [{"field": "exchange", "message": "must be one of: binance, okx, bybit, mexc, "
                                                                  "coinbase, kraken"}]
    with pytest.raises(BadRequest) as err:
        save(db, user, exchange="okx")
    assert err.value.details[0]["field"] == "passphrase"
    key_id, c = save(db, user, exchange="okx", c=creds(passphrase="pass-" + uuid.uuid4().hex))
    with db(user) as conn:
        assert keys.load_credentials(conn, user_id=user, key_id=key_id)[1].passphrase == c.passphrase


def test_inactive_exchange_is_refused(configure, tmp_path) -> None:
    configure(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    from capandex.db.session import transaction

    with transaction() as conn:
        conn.execute(update(exchanges).where(exchanges.c.id == "mexc").values(is_active=False))
    with transaction() as conn, pytest.raises(BadRequest, match="Supported exchanges: binance, okx, bybit, "
                                                                "coinbase, kraken"):
        keys.supported_exchange(conn, "mexc")


def _raw_sealed(db, key_id: str):
    with db() as conn:  # no user: the connection's own role, as an attacker with DB access would
        return conn.execute(select(exchange_keys.c.sealed).where(exchange_keys.c.id == key_id)).scalar_one()


def _overwrite(db, table, key_id: str, sealed) -> None:
    with db() as conn:
        conn.execute(update(table).where(table.c.id == key_id).values(sealed=sealed))


def test_ciphertext_copied_to_another_users_row_fails(db) -> None:
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    alice_key, _ = save(db, alice)
    mallory_key, _ = save(db, mallory)
    _overwrite(db, exchange_keys, mallory_key, _raw_sealed(db, alice_key))
    with db(mallory) as conn, pytest.raises(VaultError):
        keys.load_credentials(conn, user_id=mallory, key_id=mallory_key)
    # and within one user: another record's sealed value does not open either
    other_key, _ = save(db, alice)
    _overwrite(db, exchange_keys, other_key, _raw_sealed(db, alice_key))
    with db(alice) as conn, pytest.raises(VaultError):
        keys.load_credentials(conn, user_id=alice, key_id=other_key)


def test_ciphertext_moved_between_fields_or_purposes_fails(db) -> None:
    user = uuid.uuid4()
    key_id, _ = save(db, user)
    sealed = _raw_sealed(db, key_id)
    swapped = {**sealed, "fields": {"api_key": sealed["fields"]["secret"], "secret": sealed["fields"]["api_key"]}}
    _overwrite(db, exchange_keys, key_id, swapped)
    with db(user) as conn, pytest.raises(VaultError):
        keys.load_credentials(conn, user_id=user, key_id=key_id)
    # an exchange key's sealed value pasted into the same user's AI key row (same id even)
    from capandex.keys import ai

    with db(user) as conn:
        ai.save_ai_key(conn, user_id=user, api_key="sk-ant-" + uuid.uuid4().hex)
        ai_id = conn.execute(select(ai_keys.c.id).where(ai_keys.c.user_id == user)).scalar_one()
    _overwrite(db, ai_keys, ai_id, {**sealed, "fields": {"api_key": sealed["fields"]["api_key"]}})
    with db(user) as conn, pytest.raises(VaultError):
        ai.load_ai_key(conn, user_id=user)


def test_tampered_row_is_an_error(db) -> None:
    user = uuid.uuid4()
    key_id, _ = save(db, user)
    sealed = _raw_sealed(db, key_id)
    blob = sealed["fields"]["secret"]
    sealed["fields"]["secret"] = blob[:-4] + ("AAAA" if blob[-4:] != "AAAA" else "BBBB")
    _overwrite(db, exchange_keys, key_id, sealed)
    with db(user) as conn, pytest.raises(VaultError) as err:
        keys.load_credentials(conn, user_id=user, key_id=key_id)
    assert err.value.status == 500 and "could not be decrypted" in err.value.message


def test_concurrent_saves_never_lose_a_key(db) -> None:
    user = uuid.uuid4()
    with ThreadPoolExecutor(8) as pool:
        saved = dict(pool.map(lambda _: save(db, user), range(16)))
    with db(user) as conn:
        assert {k["id"] for k in keys.list_exchange_keys(conn, user_id=user)} == set(saved)
        for key_id, c in saved.items():
            assert keys.load_credentials(conn, user_id=user, key_id=key_id)[1] == c


def test_record_validation(db) -> None:
    user = uuid.uuid4()
    key_id, _ = save(db, user)
    with db(user) as conn:
        assert keys.record_validation(conn, user_id=user, key_id=key_id, valid=False) is True
        assert keys.list_exchange_keys(conn, user_id=user)[0]["isValid"] is False
