"""Engine function: backtests (``/api/engine/backtest…``), live/paper executions
(``/api/engine/start|stop|status``) and webhook triggers (``/api/webhooks…``)."""

from __future__ import annotations

import backtest_routes
import live_routes

from capandex.api.app import create_app, lambda_handler

#: backtests keep candles and results in the bucket; larger ones run on the state machine
app = create_app("engine", [backtest_routes.router, live_routes.router],
                 requires=("data_bucket", "backtest_state_machine_arn", "supabase_anon_key"))
handler = lambda_handler(app)
