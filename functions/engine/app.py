"""Engine function: backtests (``/api/engine/backtest…``), parameter research (``/api/engine/optimize…``),
live/paper executions (``/api/engine/start|stop|status``) and webhook triggers (``/api/webhooks…``)."""

from __future__ import annotations

import backtest_routes
import live_routes
import optimize_routes

from capandex.api.app import create_app, lambda_handler

#: backtests keep candles and results in the bucket; larger ones, and optimisations, run on state machines
app = create_app("engine", [backtest_routes.router, optimize_routes.router, live_routes.router],
                 requires=("data_bucket", "backtest_state_machine_arn", "optimize_state_machine_arn",
                           "supabase_anon_key"))
handler = lambda_handler(app)
