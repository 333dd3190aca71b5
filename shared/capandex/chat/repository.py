"""Saved chat messages, per flow.

Plain functions over a caller-owned ``Connection`` (none commits), filtering on the owner as
well as on the flow, so another user's flow is simply not found (404) on SQLite too.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from capandex.db.owned import owned_row
from capandex.db.schema import chat_messages, flows, new_id, utcnow
from capandex.timeutil import iso_utc

#: Most messages ``list_messages`` returns (the newest ones, oldest first).
MAX_LISTED = 500


def flow_document(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> dict[str, Any]:
    """The saved flow (name, nodes, edges, settings); :class:`NotFound` when missing or not the user's."""
    row = owned_row(conn, flows, flow_id, user_id=user_id, columns=(flows.c.name, flows.c.document))
    return {"name": row.name, **(row.document or {})}


def add_message(conn: Connection, *, user_id: uuid.UUID, flow_id: str, role: str, content: str,
                partial: bool = False, flow_patch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save one message of the flow's chat (the flow must be the user's: checked by the caller)."""
    row = {"id": new_id("msg"), "user_id": user_id, "flow_id": flow_id, "role": role, "content": content,
           "partial": partial, "flow_patch": flow_patch, "created_at": utcnow()}
    conn.execute(insert(chat_messages).values(row))
    return _public(row)


def list_messages(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> list[dict[str, Any]]:
    """The flow's chat, oldest first (at most the newest :data:`MAX_LISTED`)."""
    flow_document(conn, user_id=user_id, flow_id=flow_id)
    rows = conn.execute(select(chat_messages)
                        .where(chat_messages.c.flow_id == flow_id, chat_messages.c.user_id == user_id)
                        .order_by(chat_messages.c.created_at.desc(), chat_messages.c.id.desc())
                        .limit(MAX_LISTED)).mappings().all()
    return [_public(r) for r in reversed(rows)]


def delete_messages(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> int:
    """Delete the flow's chat; the number of messages deleted."""
    flow_document(conn, user_id=user_id, flow_id=flow_id)
    result = conn.execute(delete(chat_messages).where(chat_messages.c.flow_id == flow_id,
                                                      chat_messages.c.user_id == user_id))
    return result.rowcount or 0


def _public(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "role": row["role"], "content": row["content"],
            "created_at": iso_utc(row["created_at"]), "partial": bool(row["partial"]),
            "flow_patch": row["flow_patch"]}
