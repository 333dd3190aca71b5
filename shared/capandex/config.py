"""Typed settings, read once per container from the environment.

Each option resolves as explicit value, then environment variable, then default (the order
Powertools uses). On the embedded defaults (``CAPANDEX_ENV=local``, the default) everything works
without AWS or Supabase: SQLite under ``CAPANDEX_DATA_DIR``, a local vault master key and candle
store, and a documented development JWT secret. Outside ``local`` the development secret is
refused, so a deployment cannot silently run with it.

With ``CAPANDEX_ENV=aws`` the settings every function needs (:data:`AWS_REQUIRED`) must be set,
and each function names the ones it needs besides (:meth:`Settings.require`, called when its
module is imported): a deployment missing one stops at start-up with a message naming it, instead
of failing its first request. Secrets (``DATABASE_URL``, ``SUPABASE_JWT_SECRET``) may be given as
a reference (``ssm:<name>``, ``secretsmanager:<id>``) resolved at first use by
:mod:`capandex.secretstore`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from capandex.errors import Misconfigured

#: The HS256 secret of the embedded defaults. Public on purpose (the README documents it so
#: ``capandex token`` and the local dashboard can sign in); refused outside ``local``.
DEV_JWT_SECRET = "capandex-local-development-jwt-secret-do-not-deploy"

#: ``supabase start`` serves the local stack here; its cookie is then ``sb-127-auth-token``.
DEV_SUPABASE_URL = "http://127.0.0.1:54321"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/capandex``, else ``~/.local/share/capandex`` (the XDG base directory default)."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "capandex"


class Settings(BaseSettings):
    """Every setting of the backend. Environment variable names are the upper-case field names
    unless an alias says otherwise."""

    #: an empty variable counts as unset: a template declares a variable it may leave blank (the
    #: JWT secret of a JWKS-only project), and ``sam local invoke``'s env.json blanks AWS-only ones
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    env: Literal["local", "aws"] = Field("local", alias="CAPANDEX_ENV")
    #: the SQLite database, the local vault key and the candle store: one fixed per-user folder
    #: (never relative to the working directory, so every command finds the same data)
    data_dir: Path = Field(default_factory=lambda: default_data_dir(), alias="CAPANDEX_DATA_DIR")

    # Database: Supabase Postgres through its transaction pooler, or SQLite when unset. A secret
    # (the URL holds the password): the value, or ssm:<name> / secretsmanager:<id>.
    database_url: str | None = None
    #: pooled Postgres connections a long-running process keeps (``capandex serve``); 0, the
    #: default, opens one per transaction, as Lambda behind Supabase's transaction pooler must
    db_pool_size: int = Field(0, ge=0, alias="CAPANDEX_DB_POOL_SIZE")

    # Supabase Auth. The JWT secret is a secret like DATABASE_URL (a value or a reference).
    supabase_url: str = DEV_SUPABASE_URL
    supabase_jwt_secret: SecretStr | None = None
    supabase_jwks_url: str | None = None
    supabase_jwt_issuer: str | None = None
    jwt_audience: str = "authenticated"
    #: the project's anon (publishable) key, which Supabase's API gateway wants on every Auth call
    supabase_anon_key: SecretStr | None = None
    #: confirm the session with Supabase Auth before actions that move money or secrets
    #: (capandex.auth.sessions); unset: on in aws, off locally (``capandex token`` sessions exist
    #: in no Auth server; set it true with ``supabase start``)
    confirm_sessions: bool | None = Field(None, alias="CAPANDEX_CONFIRM_SESSIONS")

    # HTTP edge.
    max_body_bytes: int = Field(1_048_576, alias="CAPANDEX_MAX_BODY_BYTES")

    # AI assistant (chat): the user's own Anthropic key is used; these shape the calls.
    #: Newest Sonnet id in the installed SDK's model list (claude-sonnet-4-5 is marked deprecated there).
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_max_tokens: int = Field(4096, gt=0)  # per answer (one request to Anthropic)
    anthropic_timeout_seconds: float = Field(60.0, gt=0)  # connect/read timeout per request
    anthropic_max_retries: int = Field(2, ge=0)  # SDK retries on 429/5xx/529 before the first byte
    #: POST /api/chat per user: a token bucket of ``chat_rate_burst`` requests refilled at
    #: ``chat_rate_per_minute`` (kept in the database, so it holds across Lambda containers).
    chat_rate_per_minute: float = Field(10.0, gt=0, alias="CAPANDEX_CHAT_RATE_PER_MINUTE")
    chat_rate_burst: int = Field(5, ge=1, alias="CAPANDEX_CHAT_RATE_BURST")

    # Live engine (capandex.live). The queue is unset locally: `capandex tick` and `serve` run the
    # scheduler and the worker in-process instead of through SQS.
    tick_queue_url: str | None = Field(None, alias="CAPANDEX_TICK_QUEUE_URL")
    #: consecutive failed ticks after which an execution ends in status "error"
    live_max_consecutive_failures: int = Field(3, ge=1, alias="CAPANDEX_LIVE_MAX_FAILURES")
    #: one tick processes at most this many unprocessed candles, oldest first; the rest wait for the
    #: next tick, never skipped (capandex.live.catchup: beyond it the user is told it is behind)
    live_max_catchup_candles: int = Field(500, ge=1, alias="CAPANDEX_LIVE_MAX_CATCHUP")
    #: a live buy is placed only while its signal candle is the newest settled candle or at most
    #: this many before it, and at most ``live_entry_max_delay_seconds`` after its close; an older
    #: one is not placed (capandex.live.entries). Exits are always placed.
    live_entry_max_age_candles: int = Field(1, ge=0, alias="CAPANDEX_LIVE_ENTRY_MAX_AGE_CANDLES")
    live_entry_max_delay_seconds: int = Field(900, ge=60, alias="CAPANDEX_LIVE_ENTRY_MAX_DELAY_SECONDS")
    #: seconds a worker holds a live order intent while it places it; no other worker places (or
    #: looks up and re-places) those orders meanwhile. A worker that gives up releases it at once
    #: (capandex.live.intents); this bound only matters when a worker dies holding it, so it must
    #: exceed the worker's Lambda timeout (60 s) and stay below the visibility timeout (360 s).
    live_order_lease_seconds: int = Field(90, ge=0, alias="CAPANDEX_LIVE_ORDER_LEASE_SECONDS")
    #: the most candles a parity report (GET /api/engine/parity) backtests (about 0.1 s per million)
    parity_max_candles: int = Field(1_000_000, ge=1, alias="CAPANDEX_PARITY_MAX_CANDLES")
    #: seconds an intent released after an ambiguous failure (timeout, 5xx, rate limit) waits
    #: before another worker looks its ids up: an order the exchange accepted shows up by then
    live_order_settle_seconds: int = Field(5, ge=0, alias="CAPANDEX_LIVE_ORDER_SETTLE_SECONDS")
    #: webhook calls accepted per flow per minute, and the largest webhook body in bytes
    webhook_calls_per_minute: int = Field(30, ge=1, alias="CAPANDEX_WEBHOOK_CALLS_PER_MINUTE")
    webhook_max_body_bytes: int = Field(8192, ge=1, alias="CAPANDEX_WEBHOOK_MAX_BODY_BYTES")
    #: public base URL of the API (for the webhook URL shown once); unset → a path is returned
    public_api_url: str | None = Field(None, alias="CAPANDEX_PUBLIC_API_URL")

    # Exchanges (capandex.exchanges). CAPANDEX_EXCHANGE_URLS is a JSON object mapping an exchange
    # id to a base URL that replaces scheme and host of every REST URL of that exchange (a proxy,
    # a regional endpoint, a local stand-in), e.g. {"binance": "http://127.0.0.1:8081"}.
    exchange_urls: dict[str, str] = Field(default_factory=dict, alias="CAPANDEX_EXCHANGE_URLS")
    #: exchange ids whose clients run on the exchange's sandbox/testnet (JSON list, e.g. ["binance"])
    exchange_sandbox: list[str] = Field(default_factory=list, alias="CAPANDEX_EXCHANGE_SANDBOX")
    #: per-request timeout of every exchange call, in milliseconds
    exchange_timeout_ms: int = Field(10_000, alias="CAPANDEX_EXCHANGE_TIMEOUT_MS", ge=100)

    # Market data and backtests (capandex.marketdata, capandex.backtests).
    #: S3 bucket for candle chunks and backtest results (env=aws); the local store is
    #: <data_dir>/store otherwise
    data_bucket: str | None = Field(None, alias="CAPANDEX_DATA_BUCKET")
    #: seconds of estimated work a backtest may take inside the request; larger ones run async
    backtest_sync_budget_s: float = Field(10.0, alias="CAPANDEX_BACKTEST_SYNC_BUDGET_S")
    #: a backtest still ``running`` this many seconds after it started is reported failed
    backtest_deadline_s: int = Field(1800, alias="CAPANDEX_BACKTEST_DEADLINE_S")
    #: background backtests run at once in-process (embedded path)
    backtest_workers: int = Field(2, alias="CAPANDEX_BACKTEST_WORKERS", ge=1)
    #: the backtest state machine (env=aws); async backtests start an execution of it
    backtest_state_machine_arn: str | None = Field(None, alias="CAPANDEX_BACKTEST_STATE_MACHINE_ARN")

    # Parameter research (capandex.research): POST /api/engine/optimize.
    #: the optimisation state machine (env=aws); unset → `capandex serve` runs it in a process pool
    optimize_state_machine_arn: str | None = Field(None, alias="CAPANDEX_OPTIMIZE_STATE_MACHINE_ARN")
    #: batch Lambdas the Distributed Map runs at once (its MaxConcurrency)
    optimize_max_concurrency: int = Field(20, ge=1, le=10_000, alias="CAPANDEX_OPTIMIZE_MAX_CONCURRENCY")
    #: processes evaluating batches under `capandex serve`
    optimize_workers: int = Field(2, ge=1, alias="CAPANDEX_OPTIMIZE_WORKERS")
    #: the most trials one optimisation may evaluate, walk-forward windows included
    optimize_max_trials: int = Field(200_000, ge=1, alias="CAPANDEX_OPTIMIZE_MAX_TRIALS")
    #: the most engine CPU seconds one optimisation may cost by the cost model (trials × candles ×
    #: the flow's time per candle, capandex.engine.cost); 2 hours ≈ 400,000 trials of 1,000 candles
    optimize_max_cpu_seconds: float = Field(7200.0, gt=0, alias="CAPANDEX_OPTIMIZE_MAX_CPU_SECONDS")
    #: an optimisation still ``running`` this many seconds after it started is reported failed
    optimize_deadline_s: int = Field(6 * 3600, ge=60, alias="CAPANDEX_OPTIMIZE_DEADLINE_S")

    # Vault and keys (capandex.vault, capandex.keys).
    #: KMS key (id, ARN or alias) whose GenerateDataKey wraps every secret; required outside
    #: local. Unset locally → a master key file (mode 0600) wraps them instead.
    vault_kms_key_id: str | None = Field(None, alias="CAPANDEX_VAULT_KMS_KEY_ID")
    #: the local master key file; default <data_dir>/vault-master-key.json
    vault_master_key_file: Path | None = Field(None, alias="CAPANDEX_VAULT_MASTER_KEY_FILE")
    #: seconds each exchange may take to answer one balance or key-validation call
    balance_timeout_s: float = Field(8.0, alias="CAPANDEX_BALANCE_TIMEOUT_S", gt=0)
    #: POST /api/exchange-keys/validate and /api/ai-keys/validate per user (one shared bucket, in
    #: the database): a burst of ``key_validation_rate_burst``, refilled at ``…_per_hour``. A
    #: validate endpoint tells whether a key works, so it is an oracle for testing stolen keys.
    key_validation_rate_burst: int = Field(10, ge=1, alias="CAPANDEX_KEY_VALIDATION_RATE_BURST")
    key_validation_rate_per_hour: float = Field(30.0, gt=0, alias="CAPANDEX_KEY_VALIDATION_RATE_PER_HOUR")
    #: GET /api/engine/backtest/{id}/report drawings per user (a report is drawn once, then served
    #: from the store; drawing one costs up to ~3 s of CPU): a burst, refilled at ``…_per_hour``
    report_rate_burst: int = Field(10, ge=1, alias="CAPANDEX_REPORT_RATE_BURST")
    report_rate_per_hour: float = Field(60.0, gt=0, alias="CAPANDEX_REPORT_RATE_PER_HOUR")

    @model_validator(mode="after")
    def _defaults_and_guards(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().absolute()
        if self.env == "local" and self.supabase_jwt_secret is None:
            self.supabase_jwt_secret = SecretStr(DEV_JWT_SECRET)
        if self.env != "local" and self.supabase_jwt_secret is not None \
                and self.supabase_jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            raise ValueError("SUPABASE_JWT_SECRET is the public development secret; set the project's own")
        if self.env == "aws":
            self.require(*AWS_REQUIRED)
        return self

    def require(self, *fields: str) -> None:
        """Stop unless each of ``fields`` (attribute names) is set, when ``CAPANDEX_ENV=aws``.

        Raises:
            Misconfigured: naming every missing environment variable, so one deployment attempt
                shows all of them.
        """
        if self.env != "aws":
            return
        missing = [env_name(f) for f in fields if not self._is_set(f)]
        if missing:
            raise Misconfigured(f"CAPANDEX_ENV=aws needs {', '.join(missing)}, which "
                                f"{'is' if len(missing) == 1 else 'are'} not set (see README, Deploy).")

    def _is_set(self, field: str) -> bool:
        value = getattr(self, field)
        if field == "supabase_url":  # the default points at a local Supabase: it must be chosen
            return "supabase_url" in self.model_fields_set and bool(value)
        return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in SQLAlchemy form: psycopg 3 for Postgres, a file under data_dir otherwise.
        A reference is resolved here, at first use (cached by :mod:`capandex.secretstore`)."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'capandex.db').resolve()}"
        from capandex.secretstore import reveal

        url = reveal(self.database_url, setting="DATABASE_URL")
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    def jwt_secret(self) -> str | None:
        """The HS256 secret (a reference resolved at first use), or None for JWKS-only projects."""
        if self.supabase_jwt_secret is None:
            return None
        from capandex.secretstore import reveal

        return reveal(self.supabase_jwt_secret.get_secret_value(), setting="SUPABASE_JWT_SECRET")

    @property
    def sessions_confirmed(self) -> bool:
        """Whether money- and secret-moving actions ask Supabase Auth (``CAPANDEX_CONFIRM_SESSIONS``)."""
        return self.env == "aws" if self.confirm_sessions is None else self.confirm_sessions

    @property
    def auth_cookie_name(self) -> str:
        """``sb-<ref>-auth-token`` where ``<ref>`` is the first label of the Supabase host."""
        host = urlsplit(self.supabase_url).hostname or "localhost"
        return f"sb-{host.split('.')[0]}-auth-token"

    @property
    def jwks_url(self) -> str:
        return self.supabase_jwks_url or f"{self.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"


#: What every function needs in AWS (attribute names). Functions add their own with
#: :meth:`Settings.require` (the engine its bucket and state machine, the scheduler its queue…).
AWS_REQUIRED = ("supabase_url", "database_url", "vault_kms_key_id")


def env_name(field: str) -> str:
    """The environment variable of a settings attribute (``data_bucket`` → ``CAPANDEX_DATA_BUCKET``)."""
    return Settings.model_fields[field].alias or field.upper()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached: read the environment once per container)."""
    return Settings()
