-- Capandex after the first release (20261124000000_capandex_init.sql): parameter optimisations,
-- protective stop orders, notes on positions. A delta: never edit it once committed (see
-- capandex.db.migrations); tests/capandex/db/test_migrations.py proves that every file applied in
-- order gives the schema `capandex db sql` renders.

-- Orders: a stop order rests on the exchange at trigger_price. Every order already recorded, and
-- every order a previous release still writes during the deploy, is a market order. (A constant
-- default: Postgres adds the column without rewriting the table.)
alter table capandex.orders add column kind VARCHAR(8) DEFAULT 'market' NOT NULL;

alter table capandex.orders add column trigger_price FLOAT;

-- Positions: why an exit differs from the rule's (e.g. a stop crossed in a candle processed late).
alter table capandex.positions add column note TEXT;

-- Parameter research: server-written (the owner reads them; only the backend writes them).

CREATE TABLE capandex.optimizations (
	id VARCHAR(64) NOT NULL, 
	user_id UUID NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	exchange VARCHAR(32) NOT NULL, 
	symbol VARCHAR(64) NOT NULL, 
	timeframe VARCHAR(8) NOT NULL, 
	start_ms BIGINT NOT NULL, 
	end_ms BIGINT NOT NULL, 
	method VARCHAR(8) NOT NULL, 
	trials_total INTEGER NOT NULL, 
	best JSONB, 
	result_key VARCHAR(512), 
	execution_arn VARCHAR(512), 
	error TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	completed_at TIMESTAMP WITH TIME ZONE, 
	deadline_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES capandex.flows (id) ON DELETE CASCADE
);

CREATE INDEX ix_optimizations_flow_id ON capandex.optimizations (flow_id);

CREATE INDEX ix_optimizations_user_id ON capandex.optimizations (user_id);

CREATE UNIQUE INDEX optimizations_one_running_per_user ON capandex.optimizations (user_id) WHERE status = 'running';

CREATE TABLE capandex.optimization_batches (
	optimization_id VARCHAR(64) NOT NULL, 
	round INTEGER NOT NULL, 
	batch INTEGER NOT NULL, 
	user_id UUID NOT NULL, 
	trials INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (optimization_id, round, batch), 
	FOREIGN KEY(optimization_id) REFERENCES capandex.optimizations (id) ON DELETE CASCADE
);

CREATE INDEX ix_optimization_batches_user_id ON capandex.optimization_batches (user_id);

alter table capandex.optimizations enable row level security;

create policy optimizations_owner on capandex.optimizations for select to authenticated using (user_id = (select auth.uid()));

grant select on capandex.optimizations to authenticated;

grant all on capandex.optimizations to service_role;

alter table capandex.optimization_batches enable row level security;

create policy optimization_batches_owner on capandex.optimization_batches for select to authenticated using (user_id = (select auth.uid()));

grant select on capandex.optimization_batches to authenticated;

grant all on capandex.optimization_batches to service_role;
