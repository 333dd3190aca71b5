"""The Anthropic key: one per user, sealed, replaced atomically, checked through the real SDK."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from capandex.db.schema import ai_keys
from capandex.errors import BadRequest, NotFound, RateLimited, UpstreamError, UpstreamUnavailable
from capandex.keys import ai
from tests.utils import secret_guard


def new_key() -> str:
    key = "sk-ant-api03-" + uuid.uuid4().hex + uuid.uuid4().hex
    secret_guard.register(key)
    return key


@pytest.fixture
def db(configure, database_url: str):
    configure(DATABASE_URL=database_url)
    from capandex.db.session import transaction

    return transaction


def test_save_load_status_delete(db) -> None:
    user, key = uuid.uuid4(), new_key()
    with db(user) as conn:
        assert ai.ai_key_status(conn, user_id=user) == {"hasKey": False, "hint": None, "isValid": None}
        assert ai.load_ai_key(conn, user_id=user) is None
        assert ai.save_ai_key(conn, user_id=user, api_key=key) == "sk-ant-****"
    with db(user) as conn:
        assert ai.load_ai_key(conn, user_id=user) == key
        assert ai.ai_key_status(conn, user_id=user) == {"hasKey": True, "hint": "sk-ant-****", "isValid": None}
        stored = conn.execute(select(ai_keys).where(ai_keys.c.user_id == user)).one()
        assert key not in str(stored) and key[7:] not in str(stored.sealed)
    with db(user) as conn:
        assert ai.delete_ai_key(conn, user_id=user) is True
        assert ai.delete_ai_key(conn, user_id=user) is False
        assert ai.load_ai_key(conn, user_id=user) is None


def test_other_user_sees_nothing(db) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    with db(owner) as conn:
        ai.save_ai_key(conn, user_id=owner, api_key=new_key())
    with db(other) as conn:
        assert ai.load_ai_key(conn, user_id=other) is None
        assert ai.delete_ai_key(conn, user_id=other) is False
    with db(owner) as conn:
        assert ai.ai_key_status(conn, user_id=owner)["hasKey"] is True


@pytest.mark.parametrize(("bad", "why"), [
    ("sk-proj-abc", "must start with sk-ant-"), ("sk-ant-", "must start with sk-ant-"),
    ("SK-ANT-abc", "must start with sk-ant-"), ("abc", "must start with sk-ant-"),
    ("sk-ant- space", "must be printable ASCII without spaces"),
    ("sk-ant-abcé", "must be printable ASCII without spaces"),
])
def test_format_is_checked(db, bad: str, why: str) -> None:
    user = uuid.uuid4()
    with db(user) as conn, pytest.raises(BadRequest) as err:
        ai.save_ai_key(conn, user_id=user, api_key=bad)
    assert err.value.details == [{"field": "apiKey", "message": why}]
    assert bad not in err.value.message.replace("'sk-ant-'", "")


def test_saving_again_replaces_and_concurrent_saves_keep_one_working_key(db) -> None:
    user = uuid.uuid4()
    candidates = [new_key() for _ in range(12)]

    def save(key: str) -> None:
        with db(user) as conn:
            ai.save_ai_key(conn, user_id=user, api_key=key)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(save, candidates))
    with db(user) as conn:
        assert conn.execute(select(func.count()).select_from(ai_keys).where(ai_keys.c.user_id == user)).scalar() == 1
        assert ai.load_ai_key(conn, user_id=user) in candidates
    save(candidates[0])
    with db(user) as conn:
        assert ai.load_ai_key(conn, user_id=user) == candidates[0]


def test_check_against_the_models_api(anthropic_api) -> None:
    good, bad = new_key(), new_key()
    anthropic_api.keys.add(good)
    assert ai.check_anthropic_key(good) == ai.KeyCheck(True)
    result = ai.check_anthropic_key(bad)
    assert result.valid is False and "401" in result.reason
    assert anthropic_api.seen_keys == [good, bad]  # ANTHROPIC_BASE_URL honoured, the saved key sent


@pytest.mark.parametrize(("status", "kind", "error"), [
    (529, "overloaded_error", UpstreamUnavailable), (500, "api_error", UpstreamUnavailable),
    (429, "rate_limit_error", RateLimited), (404, "not_found_error", UpstreamError)])
def test_check_upstream_failures(anthropic_api, status: int, kind: str, error: type) -> None:
    key = new_key()
    anthropic_api.keys.add(key)
    anthropic_api.status_override = (status, kind)
    with pytest.raises(error):
        ai.check_anthropic_key(key)


def test_check_unreachable(configure) -> None:
    configure(ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    with pytest.raises(UpstreamUnavailable):
        ai.check_anthropic_key(new_key())


def test_validate_saved_key_records_the_outcome(db, anthropic_api) -> None:
    user, key = uuid.uuid4(), new_key()
    with pytest.raises(NotFound):
        ai.validate_saved_ai_key(user_id=user)
    with db(user) as conn:
        ai.save_ai_key(conn, user_id=user, api_key=key)
    result = ai.validate_saved_ai_key(user_id=user)
    assert result["valid"] is False and "401" in result["reason"]
    with db(user) as conn:
        assert ai.ai_key_status(conn, user_id=user)["isValid"] is False
    anthropic_api.keys.add(key)
    assert ai.validate_saved_ai_key(user_id=user) == {"valid": True}
    with db(user) as conn:
        assert ai.ai_key_status(conn, user_id=user)["isValid"] is True


def test_record_validation_marks_only_the_key_that_was_checked(db) -> None:
    user = uuid.uuid4()
    with db(user) as conn:
        ai.save_ai_key(conn, user_id=user, api_key=new_key())
    with db(user) as conn:
        checked = ai.load_saved_ai_key(conn, user_id=user)
        assert ai.record_validation(conn, user_id=user, record_id=checked.id, valid=False) is True
        assert ai.ai_key_status(conn, user_id=user)["isValid"] is False
        assert checked.api_key not in repr(checked)
    with db(user) as conn:  # a new key saved after the check: the outcome is not the new key's
        ai.save_ai_key(conn, user_id=user, api_key=new_key())
    with db(user) as conn:
        assert ai.record_validation(conn, user_id=user, record_id=checked.id, valid=False) is False
        assert ai.ai_key_status(conn, user_id=user)["isValid"] is None
    other = uuid.uuid4()
    with db(other) as conn:
        assert ai.record_validation(conn, user_id=other, record_id=checked.id, valid=True) is False
