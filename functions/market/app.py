"""Market function: supported exchanges, symbol lists and tickers (``/api/exchanges``, ``/api/market``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from capandex.api.app import create_app, lambda_handler
from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.errors import BadRequest, field_problem
from capandex.exchanges import market
from capandex.exchanges.registry import list_active, resolve
from capandex.models import ResponseModel

router = APIRouter(tags=["market"])


class ExchangePublic(ResponseModel):
    id: str
    name: str
    ccxt_id: str
    is_active: bool
    sort_order: int


class ExchangesPublic(ResponseModel):
    exchanges: list[ExchangePublic]


class SymbolsPublic(ResponseModel):
    symbols: list[str]


class TickerPublic(ResponseModel):
    symbol: str
    last: float | None
    bid: float | None
    ask: float | None
    volume: float | None
    #: change over the last 24 h, in percent
    change24h: float | None
    #: ISO 8601 UTC
    timestamp: str


@router.get("/api/exchanges", response_model=ExchangesPublic)
def list_exchanges(*, user: CurrentUser, db: Db) -> dict:
    return {"exchanges": list_active(db)}


@router.get("/api/market", response_model=SymbolsPublic | TickerPublic, responses=errors(429, 502))
def market_data(*, user: CurrentUser, db: Db,
                exchange: Annotated[str, Query(min_length=1, max_length=32, description="Exchange id, e.g. binance")],
                action: Annotated[str | None, Query(description='"symbols" lists the trading pairs')] = None,
                symbol: Annotated[str | None, Query(max_length=64, description="Trading pair, e.g. BTC/USDT")] = None,
                ) -> dict:
    resolve(exchange, db)
    if action is not None:
        if action != "symbols":
            raise BadRequest('action must be "symbols".', details=[field_problem("action", 'must be "symbols"')])
        return {"symbols": market.list_symbols(exchange)}
    if not symbol:
        raise BadRequest("Give action=symbols or a symbol (e.g. BTC/USDT).",
                         details=[field_problem("symbol", "required when action is not given")])
    return market.get_ticker(exchange, symbol)


app = create_app("market", [router])
handler = lambda_handler(app)
