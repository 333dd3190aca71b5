"""Flows and their versions in the database.

Plain functions over a SQLAlchemy ``Connection`` that the caller owns (one transaction per
request, see :mod:`capandex.db.session`); none of them commits. Every query filters on the owner
as well, so the rules hold on SQLite, which has no row-level security: another user's flow is
simply not found.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from capandex.db.owned import owned_row
from capandex.db.quota import enforce_quota
from capandex.db.schema import executions, flow_versions, flows, new_id, utcnow
from capandex.errors import Conflict, NotFound, PayloadTooLarge
from capandex.timeutil import iso_utc

#: Versions kept per flow; saving the 51st drops the oldest in the same transaction.
MAX_VERSIONS = 50
#: Flows one user may keep. With 50 versions each and :data:`MAX_DOCUMENT_BYTES`, one user's
#: flows can never take more than 100 × 51 × 256 KiB ≈ 1.3 GB, however they are saved.
MAX_FLOWS_PER_USER = 100
#: Largest stored document (nodes, edges, settings as compact UTF-8 JSON). A 500-node flow with
#: the editor's UI state takes about 150 KB.
MAX_DOCUMENT_BYTES = 256 * 1024


def document_of(body: dict[str, Any]) -> dict[str, Any]:
    """The stored document: nodes, edges and settings (the name has its own column)."""
    return {"nodes": body.get("nodes", []), "edges": body.get("edges", []),
            "settings": body.get("settings", {})}


def check_document_size(document: dict[str, Any]) -> None:
    """:class:`PayloadTooLarge` (413) when ``document`` is larger than :data:`MAX_DOCUMENT_BYTES`."""
    size = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"The flow document is {size:,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes. "
                              "Remove nodes or editor state from it.",
                              details=[{"field": "body", "message": f"at most {MAX_DOCUMENT_BYTES} bytes of JSON"}])


def _public(row: Any) -> dict[str, Any]:
    doc = row.document
    return {"id": row.id, "name": row.name, "nodes": doc.get("nodes", []), "edges": doc.get("edges", []),
            "settings": doc.get("settings", {}), "created_at": iso_utc(row.created_at),
            "updated_at": iso_utc(row.updated_at)}


def create_flow(conn: Connection, *, user_id: uuid.UUID, name: str, document: dict[str, Any]) -> dict[str, Any]:
    """Save a new flow. :class:`PayloadTooLarge` over :data:`MAX_DOCUMENT_BYTES`;
    :class:`QuotaExceeded` when the user has :data:`MAX_FLOWS_PER_USER` flows."""
    document = document_of(document)
    check_document_size(document)
    enforce_quota(conn, flows, user_id=user_id, limit=MAX_FLOWS_PER_USER, what="flows",
                  remedy="delete a flow you no longer need")
    now = utcnow()
    row = {"id": new_id("flow"), "user_id": user_id, "name": name, "document": document,
           "created_at": now, "updated_at": now}
    conn.execute(insert(flows).values(row))
    return _public(_Row(row))


def list_flows(conn: Connection, *, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(select(flows).where(flows.c.user_id == user_id).order_by(flows.c.updated_at.desc()))
    out = []
    for row in rows:
        settings = row.document.get("settings", {})
        out.append({"id": row.id, "name": row.name, "exchange": settings.get("exchange"),
                    "symbol": settings.get("symbol"), "timeframe": settings.get("timeframe"),
                    "node_count": len(row.document.get("nodes", [])),
                    "edge_count": len(row.document.get("edges", [])),
                    "created_at": iso_utc(row.created_at), "updated_at": iso_utc(row.updated_at)})
    return out


def owned_flow(conn: Connection, *, user_id: uuid.UUID, flow_id: str, lock: bool = False) -> Any:
    """The flow's row; :class:`NotFound` when it is missing or someone else's. ``lock`` serialises
    changes to the flow (version numbering and pruning under concurrent saves, concurrent starts)."""
    return owned_row(conn, flows, flow_id, user_id=user_id, lock=lock)


def get_flow(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> dict[str, Any]:
    """The flow as the API shows it; :class:`NotFound` when it is missing or someone else's."""
    return _public(owned_flow(conn, user_id=user_id, flow_id=flow_id))


def update_flow(conn: Connection, *, user_id: uuid.UUID, flow_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = owned_flow(conn, user_id=user_id, flow_id=flow_id, lock=True)
    document = dict(row.document)
    document.update({k: v for k, v in changes.items() if k in ("nodes", "edges", "settings")})
    check_document_size(document)
    values = {"document": document, "updated_at": utcnow()}
    if changes.get("name") is not None:
        values["name"] = changes["name"]
    conn.execute(update(flows).where(flows.c.id == flow_id, flows.c.user_id == user_id).values(values))
    return get_flow(conn, user_id=user_id, flow_id=flow_id)


def delete_flow(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> None:
    """Delete the flow with its versions, chat and history; refused while it is running."""
    owned_flow(conn, user_id=user_id, flow_id=flow_id, lock=True)
    running = conn.execute(select(executions.c.id).where(
        executions.c.flow_id == flow_id, executions.c.status == "running")).first()
    if running is not None:
        raise Conflict("The flow is running; stop its execution before deleting it.")
    conn.execute(delete(flows).where(flows.c.id == flow_id, flows.c.user_id == user_id))


def _version_public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "flow_id": row.flow_id, "version": row.version,
            "change_description": row.change_description, "node_count": row.node_count,
            "edge_count": row.edge_count, "created_at": iso_utc(row.created_at)}


def list_versions(conn: Connection, *, user_id: uuid.UUID, flow_id: str) -> list[dict[str, Any]]:
    """Version metadata, newest first (no document payloads)."""
    owned_flow(conn, user_id=user_id, flow_id=flow_id)
    cols = [c for c in flow_versions.c if c.name != "document"]
    rows = conn.execute(select(*cols).where(flow_versions.c.flow_id == flow_id,
                                            flow_versions.c.user_id == user_id)
                        .order_by(flow_versions.c.version.desc()))
    return [_version_public(r) for r in rows]


def _snapshot(conn: Connection, flow: Any, user_id: uuid.UUID, description: str | None) -> dict[str, Any]:
    latest = conn.execute(select(func.max(flow_versions.c.version))
                          .where(flow_versions.c.flow_id == flow.id)).scalar()
    document = flow.document
    # the name lives in its own column; the version keeps it too, so a restore brings it back
    row = {"id": new_id("ver"), "user_id": user_id, "flow_id": flow.id, "version": (latest or 0) + 1,
           "change_description": description, "document": {**document, "name": flow.name},
           "node_count": len(document.get("nodes", [])), "edge_count": len(document.get("edges", [])),
           "created_at": utcnow()}
    conn.execute(insert(flow_versions).values(row))
    conn.execute(delete(flow_versions).where(flow_versions.c.flow_id == flow.id,
                                             flow_versions.c.version <= row["version"] - MAX_VERSIONS))
    return _version_public(_Row(row))


def create_version(conn: Connection, *, user_id: uuid.UUID, flow_id: str,
                   description: str | None) -> dict[str, Any]:
    """Snapshot the flow's current state as the next version, keeping the newest 50."""
    flow = owned_flow(conn, user_id=user_id, flow_id=flow_id, lock=True)
    return _snapshot(conn, flow, user_id, description)


def restore_version(conn: Connection, *, user_id: uuid.UUID, flow_id: str, version_id: str) -> int:
    """Save the current state as a new version, then make ``version_id``'s document current,
    name included (versions saved before names were kept restore the document only).

    Returns the restored version's number.
    """
    flow = owned_flow(conn, user_id=user_id, flow_id=flow_id, lock=True)
    target = conn.execute(select(flow_versions).where(
        flow_versions.c.id == version_id, flow_versions.c.flow_id == flow_id,
        flow_versions.c.user_id == user_id)).first()
    if target is None:
        raise NotFound(f"No version with id '{version_id}' for this flow.")
    _snapshot(conn, flow, user_id, f"Auto-saved before restoring version {target.version}")
    document = dict(target.document)
    name = document.pop("name", None)
    values = {"document": document, "updated_at": utcnow(), **({"name": name} if name else {})}
    conn.execute(update(flows).where(flows.c.id == flow_id, flows.c.user_id == user_id).values(values))
    return int(target.version)


def apply_document(conn: Connection, *, user_id: uuid.UUID, flow_id: str, document: dict[str, Any],
                   description: str) -> dict[str, Any]:
    """Make ``document`` (nodes, edges, settings) the flow's current state: the state before is
    saved as a version first (as a restore does), then the new state as the next version, described
    by ``description``. Returns that version's metadata."""
    flow = owned_flow(conn, user_id=user_id, flow_id=flow_id, lock=True)
    _snapshot(conn, flow, user_id, "Auto-saved before applying changes")
    changed = {**dict(flow.document), **{k: document[k] for k in ("nodes", "edges", "settings") if k in document}}
    check_document_size(changed)
    conn.execute(update(flows).where(flows.c.id == flow_id, flows.c.user_id == user_id)
                 .values(document=changed, updated_at=utcnow()))
    return _snapshot(conn, owned_flow(conn, user_id=user_id, flow_id=flow_id), user_id, description)


class _Row:
    """Attribute access over a dict we just inserted (saves a round trip to read it back)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
