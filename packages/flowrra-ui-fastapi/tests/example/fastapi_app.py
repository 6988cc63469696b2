# fastapi_app.py: a FastAPI app that submits tasks and reads their results
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request

from flowrra import Flowrra, ResultTimeoutError, TaskStatus

REDIS_URL = os.environ.get("APP_REDIS_URL", "redis://localhost:6379/0")

flowrra = Flowrra.from_urls(broker=REDIS_URL, backend=REDIS_URL)


@flowrra.task()
async def add(a: int, b: int) -> int:
    return a + b


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Connect at startup (and run a worker in this process), close at shutdown. When
    # `flowrra worker` processes run the tasks, use `async with flowrra.producer():`.
    async with flowrra:
        yield {"flowrra": flowrra}  # the lifespan state: request.state.flowrra


api = FastAPI(lifespan=lifespan)


def get_flowrra(request: Request) -> Flowrra:
    """The dependency that hands the app to the endpoints."""
    app: Flowrra = request.state.flowrra
    return app


FlowrraApp = Annotated[Flowrra, Depends(get_flowrra)]


@api.post("/add")
async def submit_add(a: int, b: int, app: FlowrraApp) -> dict[str, str]:
    return {"task_id": await app.submit(add, a, b)}


@api.get("/tasks/{task_id}")
async def task_result(task_id: str, app: FlowrraApp, wait: float = 0.0) -> dict[str, Any]:
    if wait > 0:
        try:
            result = await app.wait_for_result(task_id, timeout=wait)
        except ResultTimeoutError:
            result = await app.get_result(task_id)
    else:
        result = await app.get_result(task_id)
    if result is None:
        raise HTTPException(404, f"no task {task_id}")
    done = result.status is TaskStatus.SUCCESS
    return {"status": result.status.value, "result": result.result if done else None}
