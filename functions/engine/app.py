"""Engine function: backtests (``/api/engine/backtest…``), live/paper executions
(``/api/engine/start|stop|status``) and webhook triggers (``/api/webhooks…``)."""

from __future__ import annotations

import backtest_routes
import live_routes

from capandex.api.app import create_app, lambda_handler

app = create_app("engine", [backtest_routes.router, live_routes.router])
handler = lambda_handler(app)
