"""Flows function: the flow documents and their versions (``/api/flows…``)."""

from __future__ import annotations

import performance_routes
from fastapi import APIRouter, status

from capandex.api.app import create_app, lambda_handler
from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.flows import repository as repo
from capandex.flows.models import (
    FlowCreate,
    FlowPublic,
    FlowsPublic,
    FlowUpdate,
    Restored,
    VersionCreate,
    VersionCreated,
    VersionsPublic,
)
from capandex.models import Deleted

router = APIRouter(prefix="/api/flows", tags=["flows"])


@router.get("", response_model=FlowsPublic)
def list_flows(*, user: CurrentUser, db: Db) -> dict:
    """Your flows, newest change first: metadata and node/edge counts, not the documents."""
    return {"flows": repo.list_flows(db, user_id=user.id)}


@router.post("", response_model=FlowPublic, status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_flow(*, user: CurrentUser, db: Db, body: FlowCreate) -> dict:
    """Save a flow document (DESIGN.md §4). A draft is stored as sent; the engine validates it when it
    is backtested, optimised or started (422 naming each node and field)."""
    document = body.model_dump(exclude={"name"}, exclude_none=True)
    return repo.create_flow(db, user_id=user.id, name=body.name, document=document)


@router.get("/{flowId}", response_model=FlowPublic, responses=errors(404))
def get_flow(*, user: CurrentUser, db: Db, flowId: str) -> dict:
    """One flow with its whole document (name, settings, nodes, edges)."""
    return repo.get_flow(db, user_id=user.id, flow_id=flowId)


@router.put("/{flowId}", response_model=FlowPublic, responses=errors(404))
def update_flow(*, user: CurrentUser, db: Db, flowId: str, body: FlowUpdate) -> dict:
    """Change the fields sent (``name``, ``settings``, ``nodes``, ``edges``); the others stay. A running
    execution keeps the document it started with."""
    changes = body.model_dump(include=body.model_fields_set, exclude_none=True)
    return repo.update_flow(db, user_id=user.id, flow_id=flowId, changes=changes)


@router.delete("/{flowId}", response_model=Deleted, responses=errors(404, 409))
def delete_flow(*, user: CurrentUser, db: Db, flowId: str) -> dict:
    """Delete the flow and its versions; 409 while an execution of it runs (stop it first)."""
    repo.delete_flow(db, user_id=user.id, flow_id=flowId)
    return {"deleted": True}


@router.get("/{flowId}/versions", response_model=VersionsPublic, responses=errors(404))
def list_versions(*, user: CurrentUser, db: Db, flowId: str) -> dict:
    """The saved versions, newest first (metadata and node/edge counts)."""
    return {"versions": repo.list_versions(db, user_id=user.id, flow_id=flowId)}


@router.post("/{flowId}/versions", response_model=VersionCreated, status_code=status.HTTP_201_CREATED,
             responses=errors(404))
def create_version(*, user: CurrentUser, db: Db, flowId: str,
                   body: VersionCreate | None = None) -> dict:
    """Snapshot the flow's current state as a new version (at most 50: the oldest goes)."""
    description = body.description if body else None
    return repo.create_version(db, user_id=user.id, flow_id=flowId, description=description)


@router.post("/{flowId}/versions/{versionId}/restore", response_model=Restored, responses=errors(404))
def restore_version(*, user: CurrentUser, db: Db, flowId: str, versionId: str) -> dict:
    """Save the current state as a version, then bring back that version's whole document, name
    included; ``version`` is the number restored."""
    version = repo.restore_version(db, user_id=user.id, flow_id=flowId, version_id=versionId)
    return {"restored": True, "version": version}


app = create_app("flows", [router, performance_routes.router], requires=("supabase_anon_key",))
handler = lambda_handler(app)
