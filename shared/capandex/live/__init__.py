"""The live engine: paper and live executions of flows, ticked once per closed candle.

Pieces (each module's docstring has the details):

- :mod:`.executions` — start / stop / status (one running execution per flow);
- :mod:`.scheduler` — which executions have a newly closed candle (the EventBridge pass);
- :mod:`.worker` — one tick of one execution: the engine's stepper on the latest closed candles
  (evaluate and decide), orders through :mod:`.orders` (paper fills inside the wrapper, live
  through :mod:`capandex.exchanges`), exactly once;
- :mod:`.intents` — the pending intent a tick or a webhook call commits: its lease, its completion
  (act, record) and the failures;
- :mod:`.ledger` — orders, positions and fills, and reconciliation with the account;
- :mod:`.running` — a running execution's row as every one of them reads it;
- :mod:`.catchup` — missed candles processed in order; :mod:`.entries` — a live buy only while
  its signal is fresh; :mod:`.protective`, :mod:`.stop_sync` — stop orders resting on the exchange;
- :mod:`.ticks` — the SQS transport and the in-process pass used by ``capandex tick`` / ``serve``;
- :mod:`.performance`, :mod:`.dashboard` — numbers from closed positions;
- :mod:`.webhooks` — the secret-URL trigger of flows with a ``webhook`` trigger node.
"""
