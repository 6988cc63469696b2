"""The FastAPI app the browser tests serve with uvicorn (``fastapi_served:api``), and the
Flowrra app their ``flowrra worker fastapi_served:flowrra`` runs: the UI at ``/flowrra/``
behind a cookie check, and read-only at ``/open/``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException
from fastapi.requests import HTTPConnection
from flowrra_ui.browser_contract import served_ui_app
from flowrra_ui_fastapi import create_router

TOKEN = "browser-token"
flowrra = served_ui_app()


def signed_in(connection: HTTPConnection) -> None:  # HTTPConnection: the WebSocket too
    if connection.cookies.get("flowrra_token") != TOKEN:
        raise HTTPException(status_code=401, detail="sign in first")


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    await flowrra.close()
    await flowrra.scheduler.stop()


api = FastAPI(lifespan=lifespan)
api.include_router(create_router(flowrra, dependencies=[Depends(signed_in)]), prefix="/flowrra")
api.include_router(create_router(flowrra), prefix="/open")
