"""A running execution's row, read the same way by everyone who acts on it: the tick
(:mod:`.worker`), the webhook trigger (:mod:`.webhooks`), the pending intent's life cycle
(:mod:`.intents`), the ledger (:mod:`.ledger`) and the reports.

An execution row carries the flow document it was started with (so an edit to the flow does not
change a running execution), the engine's broker state as JSON and the last candle it processed
(:mod:`.executions` writes it at start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from capandex.db.schema import executions, flows

if TYPE_CHECKING:
    from capandex.engine import BrokerState, CompiledFlow


def lock_execution(conn: Connection, execution_id: str) -> Any:
    """The execution's row, locked until ``conn``'s transaction ends (Postgres ``FOR UPDATE``;
    SQLite transactions are already serial); None when it does not exist."""
    query = select(executions).where(executions.c.id == execution_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def compiled_flow(row: Any) -> CompiledFlow:
    """The flow the execution was started with, validated and compiled (its settings:
    ``.flow.settings``)."""
    from capandex.engine import compile_flow

    return compile_flow(row.state["document"])


def broker_state(row: Any) -> BrokerState:
    """The engine's broker state the execution carries (a flat account before its first trade)."""
    from capandex.engine import BrokerState

    saved = row.state.get("broker")
    return BrokerState.from_dict(saved) if saved else BrokerState.start(row.initial_capital)


def fee_rate(row: Any) -> float:
    """The flow's ``settings.feeRate`` (a fraction; the engine's default when unset — a fee of 0
    is a real setting, not "unset") from the execution's document."""
    from capandex.engine.document import DEFAULT_FEE

    fee = (row.state.get("document", {}).get("settings") or {}).get("feeRate")
    return DEFAULT_FEE if fee is None else float(fee)


def flow_name(conn: Connection, row: Any) -> str:
    """The name of the execution's flow, for notifications."""
    return conn.execute(select(flows.c.name).where(flows.c.id == row.flow_id)).scalar() or "Flow"
