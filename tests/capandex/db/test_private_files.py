"""The embedded defaults keep their files private: data directory 0700, database files 0600."""

from __future__ import annotations

import os

from sqlalchemy import text

from capandex.db.session import get_engine, transaction


def test_sqlite_database_and_wal_are_0600_in_a_0700_data_dir(configure, tmp_path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # as a permissive umask left it
    previous = os.umask(0o022)
    try:
        settings = configure(DATABASE_URL=None)
        with transaction(engine=get_engine(settings.sqlalchemy_url)) as conn:
            conn.execute(text("create table if not exists probe (x integer)"))
            conn.execute(text("insert into probe values (1)"))
    finally:
        os.umask(previous)
    assert data_dir.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in data_dir.iterdir()}
    assert modes.keys() >= {"capandex.db", "capandex.db-wal", "capandex.db-shm"}
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_world_readable_database_is_tightened(configure, tmp_path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = data_dir / "capandex.db"
    db.touch()
    db.chmod(0o644)
    settings = configure(DATABASE_URL=None)
    get_engine(settings.sqlalchemy_url)
    assert db.stat().st_mode & 0o777 == 0o600
