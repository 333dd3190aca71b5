"""Flows and versions on both databases (SQLite embedded default and real Postgres)."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from capandex.db.schema import flow_versions
from capandex.db.session import get_engine, transaction
from capandex.errors import NotFound
from capandex.flows import repository as repo

DOC = {"nodes": [{"id": "a", "type": "price", "data": {"field": "close"}}], "edges": [], "settings": {}}


@pytest.fixture
def engine(database_url: str):
    return get_engine(database_url)


def _new_flow(engine, user: uuid.UUID) -> str:
    with transaction(user, engine=engine) as conn:
        return repo.create_flow(conn, user_id=user, name="f", document=DOC)["id"]


def test_create_read_update_delete(engine) -> None:
    user = uuid.uuid4()
    flow_id = _new_flow(engine, user)
    with transaction(user, engine=engine) as conn:
        assert repo.get_flow(conn, user_id=user, flow_id=flow_id)["nodes"] == DOC["nodes"]
        updated = repo.update_flow(conn, user_id=user, flow_id=flow_id, changes={"name": "g", "edges": []})
        assert updated["name"] == "g" and updated["nodes"] == DOC["nodes"]
        repo.delete_flow(conn, user_id=user, flow_id=flow_id)
        with pytest.raises(NotFound):
            repo.get_flow(conn, user_id=user, flow_id=flow_id)


def test_another_users_flow_is_not_found(engine) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    flow_id = _new_flow(engine, owner)
    with transaction(other, engine=engine) as conn:
        for call in (lambda: repo.get_flow(conn, user_id=other, flow_id=flow_id),
                     lambda: repo.list_versions(conn, user_id=other, flow_id=flow_id),
                     lambda: repo.create_version(conn, user_id=other, flow_id=flow_id, description=None),
                     lambda: repo.delete_flow(conn, user_id=other, flow_id=flow_id)):
            with pytest.raises(NotFound):
                call()
        assert repo.list_flows(conn, user_id=other) == []


def test_versions_keep_the_newest_fifty(engine) -> None:
    user = uuid.uuid4()
    flow_id = _new_flow(engine, user)
    for i in range(53):
        with transaction(user, engine=engine) as conn:
            repo.create_version(conn, user_id=user, flow_id=flow_id, description=f"v{i + 1}")
    with transaction(user, engine=engine) as conn:
        versions = repo.list_versions(conn, user_id=user, flow_id=flow_id)
    assert [v["version"] for v in versions] == list(range(53, 3, -1))
    assert versions[0]["change_description"] == "v53"


def test_concurrent_snapshots_number_uniquely_and_keep_fifty(engine) -> None:
    user = uuid.uuid4()
    flow_id = _new_flow(engine, user)
    errors: list[BaseException] = []

    def save(n: int) -> None:
        try:
            for _ in range(n):
                with transaction(user, engine=engine) as conn:
                    repo.create_version(conn, user_id=user, flow_id=flow_id, description=None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(15,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with transaction(user, engine=engine) as conn:
        numbers = [v["version"] for v in repo.list_versions(conn, user_id=user, flow_id=flow_id)]
        total = conn.execute(select(func.count()).select_from(flow_versions)
                             .where(flow_versions.c.flow_id == flow_id)).scalar()
    assert numbers == list(range(60, 10, -1))
    assert total == 50


def test_restore_saves_current_state_first(engine) -> None:
    user = uuid.uuid4()
    flow_id = _new_flow(engine, user)
    with transaction(user, engine=engine) as conn:
        v1 = repo.create_version(conn, user_id=user, flow_id=flow_id, description="original")
        repo.update_flow(conn, user_id=user, flow_id=flow_id, changes={"nodes": []})
        assert repo.restore_version(conn, user_id=user, flow_id=flow_id, version_id=v1["id"]) == 1
        assert repo.get_flow(conn, user_id=user, flow_id=flow_id)["nodes"] == DOC["nodes"]
        versions = repo.list_versions(conn, user_id=user, flow_id=flow_id)
    assert versions[0]["version"] == 2 and versions[0]["node_count"] == 0
    assert "restoring version 1" in versions[0]["change_description"]


def test_restore_brings_back_the_name_too(engine) -> None:
    user = uuid.uuid4()
    flow_id = _new_flow(engine, user)
    with transaction(user, engine=engine) as conn:
        before = repo.get_flow(conn, user_id=user, flow_id=flow_id)
        v1 = repo.create_version(conn, user_id=user, flow_id=flow_id, description="named")
        repo.update_flow(conn, user_id=user, flow_id=flow_id, changes={"name": "renamed", "nodes": []})
        repo.restore_version(conn, user_id=user, flow_id=flow_id, version_id=v1["id"])
        after = repo.get_flow(conn, user_id=user, flow_id=flow_id)
    assert after["name"] == before["name"] != "renamed"
    keys = ("nodes", "edges", "settings")
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
    assert "name" not in after["settings"]


def test_restore_of_a_version_of_another_flow_is_not_found(engine) -> None:
    user = uuid.uuid4()
    a, b = _new_flow(engine, user), _new_flow(engine, user)
    with transaction(user, engine=engine) as conn:
        version = repo.create_version(conn, user_id=user, flow_id=a, description=None)
        with pytest.raises(NotFound):
            repo.restore_version(conn, user_id=user, flow_id=b, version_id=version["id"])
