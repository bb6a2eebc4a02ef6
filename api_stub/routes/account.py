"""GET /api/me: the caller's balance."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from api_stub import credits
from api_stub.routes.common import current_user, services
from api_stub.schemas import BalanceView


async def get_me(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)

    def read() -> credits.Balance | None:
        with svc.db.transaction(write=False) as tx:
            return credits.balance(tx, user.id)

    balance = await run_in_threadpool(read)
    assert balance is not None  # every user is created with a balance row
    view = BalanceView(user_id=user.id, available=balance.available, held=balance.held)
    return JSONResponse(view.model_dump(mode="json"))
