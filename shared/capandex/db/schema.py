"""The one schema definition (SQLAlchemy Core).

Postgres (Supabase) and SQLite are both created from these tables: SQLite with
``metadata.create_all`` (a file of an earlier release is upgraded by
:mod:`capandex.db.sqlite_upgrade`), Postgres by the files of ``supabase/migrations/``, which a
test holds equal to the schema :mod:`capandex.db.migrations` renders from these tables (with
row-level security). A change here needs a delta migration: see that module. Every user-owned
table has a ``user_id`` column; RLS lets a row be seen and changed only when
``user_id = auth.uid()``.

Ids are text with a readable prefix (``flow_…``, ``ver_…``) as the API reference shows them;
user ids are Supabase's ``auth.users.id`` uuids.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from capandex.timeutil import utcnow  # re-exported: the repositories stamp rows with it

metadata = MetaData()

#: The Postgres schema of every table (SQLite has none); see :mod:`capandex.db.migrations` for why
#: it is not ``public``. Queries name tables unqualified and the engine maps them here.
POSTGRES_SCHEMA = "capandex"

Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def new_id(prefix: str) -> str:
    """A new random id such as ``flow_4f0c…`` (122 random bits)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _id() -> Column[str]:
    return Column("id", String(64), primary_key=True)


def _owner() -> Column[uuid.UUID]:
    return Column("user_id", Uuid, nullable=False, index=True)


def _created() -> Column[dt.datetime]:
    return Column("created_at", UtcDateTime, nullable=False, default=utcnow)


def _flow_ref(ondelete: str = "CASCADE", nullable: bool = False) -> Column[str]:
    return Column("flow_id", String(64), ForeignKey("flows.id", ondelete=ondelete),
                  nullable=nullable, index=True)


def _market_range() -> tuple[Column[Any], ...]:
    """What a backtest or an optimisation runs over: the market and the range (epoch ms)."""
    return (Column("exchange", String(32), nullable=False), Column("symbol", String(64), nullable=False),
            Column("timeframe", String(8), nullable=False), Column("start_ms", BigInteger, nullable=False),
            Column("end_ms", BigInteger, nullable=False))


def _run_times() -> tuple[Column[Any], ...]:
    """When a background run was created, last changed, completed, and by when it must have ended
    (still ``running`` after ``deadline_at``: reported failed, its request or worker died)."""
    return (_created(), Column("updated_at", UtcDateTime, nullable=False, default=utcnow),
            Column("completed_at", UtcDateTime), Column("deadline_at", UtcDateTime))


#: Tables readable by every signed-in user and owned by nobody.
SHARED_TABLES = ("exchanges",)
#: User-owned tables whose rows only the server writes (transactions without a user): the owner
#: may read them, never write them. A user who could write ``rate_limits`` would refill their own
#: bucket; one who could write ``optimizations`` would end a running row to start another
#: (the one-running index is the cost bound) or point ``result_key`` at another user's result.
SERVER_WRITTEN_TABLES = ("rate_limits", "optimizations", "optimization_batches")

exchanges = Table(
    "exchanges", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("ccxt_id", String(32), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("sort_order", Integer, nullable=False),
    Column("requires_passphrase", Boolean, nullable=False, default=False),
)

profiles = Table(
    "profiles", metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("notification_preferences", Json, nullable=False),
    _created(),
    Column("updated_at", UtcDateTime, nullable=False, default=utcnow),
)

flows = Table(
    "flows", metadata,
    _id(), _owner(),
    Column("name", String(200), nullable=False),
    Column("document", Json, nullable=False),
    Column("webhook_token_hash", String(128)),
    _created(),
    Column("updated_at", UtcDateTime, nullable=False, default=utcnow),
)

flow_versions = Table(
    "flow_versions", metadata,
    _id(), _owner(), _flow_ref(),
    Column("version", Integer, nullable=False),
    Column("change_description", Text),
    Column("document", Json, nullable=False),
    Column("node_count", Integer, nullable=False),
    Column("edge_count", Integer, nullable=False),
    _created(),
    UniqueConstraint("flow_id", "version", name="flow_versions_flow_version_key"),
)

backtests = Table(
    "backtests", metadata,
    _id(), _owner(), _flow_ref(),
    Column("status", String(16), nullable=False),
    *_market_range(),
    Column("progress", Float, nullable=False, default=0.0),
    Column("metrics", Json),
    Column("result_key", String(512)),
    Column("error", Text),
    *_run_times(),  # a NULL deadline_at: the settings' CAPANDEX_BACKTEST_DEADLINE_S after created_at
)

#: Parameter research (capandex.research): one row per optimisation. At most one ``running`` row
#: per user (the partial unique index), so two concurrent submissions cannot both start.
optimizations = Table(
    "optimizations", metadata,
    _id(), _owner(), _flow_ref(),
    Column("status", String(16), nullable=False),
    *_market_range(),
    Column("method", String(8), nullable=False),
    Column("trials_total", Integer, nullable=False, default=0),
    Column("best", Json),
    Column("result_key", String(512)),
    Column("execution_arn", String(512)),
    Column("error", Text),
    *_run_times(),
    Index("optimizations_one_running_per_user", "user_id", unique=True,
          postgresql_where=text("status = 'running'"), sqlite_where=text("status = 'running'")),
)

#: One row per evaluated batch: a worker that is retried inserts the same key again, so progress
#: (the sum of ``trials``) never counts a batch twice.
optimization_batches = Table(
    "optimization_batches", metadata,
    Column("optimization_id", String(64), ForeignKey("optimizations.id", ondelete="CASCADE"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("batch", Integer, primary_key=True),
    _owner(),
    Column("trials", Integer, nullable=False),
    _created(),
)

executions = Table(
    "executions", metadata,
    _id(), _owner(), _flow_ref(),
    Column("mode", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("exchange_key_id", String(64)),
    Column("initial_capital", Float, nullable=False),
    Column("state", Json, nullable=False),
    Column("current_tick", Integer, nullable=False, default=0),
    Column("last_candle_ms", BigInteger),
    Column("error_count", Integer, nullable=False, default=0),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("started_at", UtcDateTime, nullable=False, default=utcnow),
    Column("stopped_at", UtcDateTime),
    Index("executions_one_running_per_flow", "flow_id", unique=True,
          postgresql_where=text("status = 'running'"), sqlite_where=text("status = 'running'")),
)

positions = Table(
    "positions", metadata,
    _id(), _owner(), _flow_ref(),
    Column("execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("symbol", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("units", Float, nullable=False),
    Column("entry_price", Float, nullable=False),
    Column("entry_time", UtcDateTime, nullable=False),
    Column("exit_price", Float),
    Column("exit_time", UtcDateTime),
    Column("fees", Float, nullable=False, default=0.0),
    Column("pnl", Float),
    Column("pnl_percent", Float),
    Column("exit_reason", String(16)),
    #: why the exit differs from the rule's (e.g. a stop crossed in a candle processed late)
    Column("note", Text),
)

orders = Table(
    "orders", metadata,
    _id(), _owner(),
    Column("execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("client_order_id", String(64), nullable=False, unique=True),
    Column("exchange_order_id", String(128)),
    Column("symbol", String(64), nullable=False),
    Column("side", String(4), nullable=False),
    Column("amount", Float),
    Column("price", Float),
    Column("filled", Float),
    Column("cost", Float),
    Column("fee", Float),
    Column("status", String(16), nullable=False),
    Column("candle_ms", BigInteger, nullable=False),
    #: "market", or "stop": a protective stop-loss sell resting on the exchange at trigger_price
    #: (a server default: orders written before stops existed, and by a release that does not know
    #: the column, are market orders)
    Column("kind", String(8), nullable=False, server_default="market"),
    Column("trigger_price", Float),
    _created(),
)

exchange_keys = Table(
    "exchange_keys", metadata,
    _id(), _owner(),
    Column("exchange", String(32), nullable=False),
    Column("label", String(100)),
    Column("api_key_hint", String(32), nullable=False),
    Column("sealed", Json, nullable=False),  # vault envelope: wrapped data key + ciphertexts
    Column("is_valid", Boolean),
    Column("validated_at", UtcDateTime),
    _created(),
)

ai_keys = Table(
    "ai_keys", metadata,
    _id(), Column("user_id", Uuid, nullable=False, unique=True),
    Column("provider", String(16), nullable=False, default="anthropic"),
    Column("hint", String(32), nullable=False),
    Column("sealed", Json, nullable=False),
    Column("is_valid", Boolean),
    Column("validated_at", UtcDateTime),
    _created(),
)

notifications = Table(
    "notifications", metadata,
    _id(), _owner(),
    Column("type", String(32), nullable=False),
    # the preference key that produced it (engine_start, engine_stop, trade_executed, engine_error)
    Column("event", String(32)),
    Column("title", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("action_url", String(500)),
    Column("read_at", UtcDateTime),
    _created(),
    Index("notifications_user_created", "user_id", "created_at"),
)

chat_messages = Table(
    "chat_messages", metadata,
    _id(), _owner(), _flow_ref(),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("partial", Boolean, nullable=False, default=False),
    Column("flow_patch", Json),
    _created(),
    Index("chat_messages_flow_created", "flow_id", "created_at"),
)

#: Per-user token buckets (``chat``, ``key_validation``): shared by every Lambda container, see
#: capandex.ratelimit. Users may read their rows but not write them (SERVER_WRITTEN_TABLES).
rate_limits = Table(
    "rate_limits", metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("bucket", String(32), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

tick_records = Table(
    "tick_records", metadata,
    Column("execution_id", String(64), ForeignKey("executions.id", ondelete="CASCADE"),
           primary_key=True),
    Column("candle_ms", BigInteger, primary_key=True),
    _owner(),
    Column("status", String(16), nullable=False),
    _created(),
)

#: Tables whose rows belong to one user (RLS: ``user_id = auth.uid()``).
USER_TABLES = tuple(t.name for t in metadata.sorted_tables if "user_id" in t.c)

#: The seeded exchanges (DESIGN: binance, okx, bybit, mexc, coinbase, kraken).
SEED_EXCHANGES: tuple[dict[str, Any], ...] = (
    {"id": "binance", "name": "Binance", "ccxt_id": "binance", "sort_order": 1},
    {"id": "okx", "name": "OKX", "ccxt_id": "okx", "sort_order": 2,
     "requires_passphrase": True},
    {"id": "bybit", "name": "Bybit", "ccxt_id": "bybit", "sort_order": 3},
    {"id": "mexc", "name": "MEXC", "ccxt_id": "mexc", "sort_order": 4},
    {"id": "coinbase", "name": "Coinbase", "ccxt_id": "coinbase", "sort_order": 5},
    {"id": "kraken", "name": "Kraken", "ccxt_id": "kraken", "sort_order": 6},
)
