-- The SQLite schema of the first release (commit 265d673): its metadata.create_all on SQLite, as
-- sqlite_master records it. tests/capandex/db/test_sqlite_upgrade.py opens a file made from it.

CREATE TABLE exchanges (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	ccxt_id VARCHAR(32) NOT NULL, 
	is_active BOOLEAN NOT NULL, 
	sort_order INTEGER NOT NULL, 
	requires_passphrase BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE profiles (
	user_id CHAR(32) NOT NULL, 
	notification_preferences JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (user_id)
);

CREATE TABLE flows (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	document JSON NOT NULL, 
	webhook_token_hash VARCHAR(128), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_flows_user_id ON flows (user_id);

CREATE TABLE exchange_keys (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	exchange VARCHAR(32) NOT NULL, 
	label VARCHAR(100), 
	api_key_hint VARCHAR(32) NOT NULL, 
	sealed JSON NOT NULL, 
	is_valid BOOLEAN, 
	validated_at DATETIME, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_exchange_keys_user_id ON exchange_keys (user_id);

CREATE TABLE ai_keys (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	provider VARCHAR(16) NOT NULL, 
	hint VARCHAR(32) NOT NULL, 
	sealed JSON NOT NULL, 
	is_valid BOOLEAN, 
	validated_at DATETIME, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (user_id)
);

CREATE TABLE notifications (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	type VARCHAR(32) NOT NULL, 
	event VARCHAR(32), 
	title VARCHAR(200) NOT NULL, 
	message TEXT NOT NULL, 
	action_url VARCHAR(500), 
	read_at DATETIME, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_notifications_user_id ON notifications (user_id);

CREATE INDEX notifications_user_created ON notifications (user_id, created_at);

CREATE TABLE rate_limits (
	user_id CHAR(32) NOT NULL, 
	bucket VARCHAR(32) NOT NULL, 
	tokens FLOAT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (user_id, bucket)
);

CREATE TABLE flow_versions (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	version INTEGER NOT NULL, 
	change_description TEXT, 
	document JSON NOT NULL, 
	node_count INTEGER NOT NULL, 
	edge_count INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT flow_versions_flow_version_key UNIQUE (flow_id, version), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE INDEX ix_flow_versions_flow_id ON flow_versions (flow_id);

CREATE INDEX ix_flow_versions_user_id ON flow_versions (user_id);

CREATE TABLE backtests (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	exchange VARCHAR(32) NOT NULL, 
	symbol VARCHAR(64) NOT NULL, 
	timeframe VARCHAR(8) NOT NULL, 
	start_ms BIGINT NOT NULL, 
	end_ms BIGINT NOT NULL, 
	progress FLOAT NOT NULL, 
	metrics JSON, 
	result_key VARCHAR(512), 
	error TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	completed_at DATETIME, 
	deadline_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE INDEX ix_backtests_user_id ON backtests (user_id);

CREATE INDEX ix_backtests_flow_id ON backtests (flow_id);

CREATE TABLE executions (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	mode VARCHAR(8) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	exchange VARCHAR(32) NOT NULL, 
	symbol VARCHAR(64) NOT NULL, 
	timeframe VARCHAR(8) NOT NULL, 
	exchange_key_id VARCHAR(64), 
	initial_capital FLOAT NOT NULL, 
	state JSON NOT NULL, 
	current_tick INTEGER NOT NULL, 
	last_candle_ms BIGINT, 
	error_count INTEGER NOT NULL, 
	consecutive_failures INTEGER NOT NULL, 
	last_error TEXT, 
	started_at DATETIME NOT NULL, 
	stopped_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX executions_one_running_per_flow ON executions (flow_id) WHERE status = 'running';

CREATE INDEX ix_executions_user_id ON executions (user_id);

CREATE INDEX ix_executions_flow_id ON executions (flow_id);

CREATE TABLE chat_messages (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	content TEXT NOT NULL, 
	partial BOOLEAN NOT NULL, 
	flow_patch JSON, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE INDEX chat_messages_flow_created ON chat_messages (flow_id, created_at);

CREATE INDEX ix_chat_messages_user_id ON chat_messages (user_id);

CREATE INDEX ix_chat_messages_flow_id ON chat_messages (flow_id);

CREATE TABLE positions (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	flow_id VARCHAR(64) NOT NULL, 
	execution_id VARCHAR(64) NOT NULL, 
	symbol VARCHAR(64) NOT NULL, 
	status VARCHAR(8) NOT NULL, 
	units FLOAT NOT NULL, 
	entry_price FLOAT NOT NULL, 
	entry_time DATETIME NOT NULL, 
	exit_price FLOAT, 
	exit_time DATETIME, 
	fees FLOAT NOT NULL, 
	pnl FLOAT, 
	pnl_percent FLOAT, 
	exit_reason VARCHAR(16), 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE, 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE
);

CREATE INDEX ix_positions_user_id ON positions (user_id);

CREATE INDEX ix_positions_execution_id ON positions (execution_id);

CREATE INDEX ix_positions_flow_id ON positions (flow_id);

CREATE TABLE orders (
	id VARCHAR(64) NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	execution_id VARCHAR(64) NOT NULL, 
	client_order_id VARCHAR(64) NOT NULL, 
	exchange_order_id VARCHAR(128), 
	symbol VARCHAR(64) NOT NULL, 
	side VARCHAR(4) NOT NULL, 
	amount FLOAT, 
	price FLOAT, 
	filled FLOAT, 
	cost FLOAT, 
	fee FLOAT, 
	status VARCHAR(16) NOT NULL, 
	candle_ms BIGINT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE, 
	UNIQUE (client_order_id)
);

CREATE INDEX ix_orders_execution_id ON orders (execution_id);

CREATE INDEX ix_orders_user_id ON orders (user_id);

CREATE TABLE tick_records (
	execution_id VARCHAR(64) NOT NULL, 
	candle_ms BIGINT NOT NULL, 
	user_id CHAR(32) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (execution_id, candle_ms), 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE
);

CREATE INDEX ix_tick_records_user_id ON tick_records (user_id);

