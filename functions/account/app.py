"""Account function: notifications, profile preferences and the dashboard."""

from __future__ import annotations

import account_routes
import balance_routes

from capandex.api.app import create_app, lambda_handler

app = create_app("account", [account_routes.router, balance_routes.router])
handler = lambda_handler(app)
