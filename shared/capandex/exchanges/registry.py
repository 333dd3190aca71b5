"""Which exchanges Capandex offers: the ``exchanges`` table (seeded, shared by every user)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from capandex.db.schema import exchanges
from capandex.errors import BadRequest
from capandex.ttlcache import TTLCache

#: the table changes only by migration/admin; a minute of staleness is harmless
_active = TTLCache(ttl_s=60.0)


def list_active(conn: Connection) -> list[dict[str, Any]]:
    """Active exchanges by ``sort_order``, as the API shows them (id, name, ccxt_id, …)."""
    rows = conn.execute(select(exchanges.c.id, exchanges.c.name, exchanges.c.ccxt_id,
                               exchanges.c.is_active, exchanges.c.sort_order)
                        .where(exchanges.c.is_active.is_(True))
                        .order_by(exchanges.c.sort_order, exchanges.c.id))
    return [dict(row._mapping) for row in rows]


def active_ccxt_ids(conn: Connection | None = None) -> dict[str, str]:
    """``{exchange id: ccxt id}`` of the active exchanges (cached for a minute per container)."""
    def load() -> dict[str, str]:
        if conn is not None:
            return {row["id"]: row["ccxt_id"] for row in list_active(conn)}
        from capandex.db.session import transaction

        with transaction() as own:
            return {row["id"]: row["ccxt_id"] for row in list_active(own)}

    return _active.get_or_set("active", load)


def resolve(exchange_id: str, conn: Connection | None = None) -> str:
    """The ccxt id of an active exchange; :class:`BadRequest` naming the supported ones otherwise."""
    import ccxt

    active = active_ccxt_ids(conn)
    ccxt_id = active.get(exchange_id)
    if ccxt_id is None or ccxt_id not in ccxt.exchanges:
        supported = ", ".join(active) or "none"
        raise BadRequest(f"Unsupported exchange '{exchange_id}'. Supported exchanges: {supported}.",
                         details=[{"field": "exchange", "message": f"must be one of: {supported}"}])
    return ccxt_id


def clear_cache() -> None:
    """Forget the cached list (tests, or after changing the table)."""
    _active.clear()
