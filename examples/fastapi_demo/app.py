"""FastAPI on hornbeam: an items API whose data lives in the state shared by every worker.

Run it on four workers (from the repository root):

    hornbeam app:app --pythonpath examples/fastapi_demo -w 4

Whichever worker answers, the items, their ids and their view counters are the same: they
are kept with `hornbeam_erlang` (an LMDB store shared by the workers, calls in microseconds,
safe to make from `async def` handlers). Each worker runs the lifespan startup once, which
`GET /stats` shows, and `/ws/echo` is a WebSocket that sends every message back.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel, Field

from hornbeam_erlang import (
    state_delete,
    state_delete_if,
    state_get,
    state_get_multi,
    state_incr,
    state_keys,
    state_set,
)

ITEM_PREFIX = "item:"  # item:<id> -> the item's record
VIEWS_PREFIX = "views:item:"  # views:item:<id> -> how many times GET /items/<id> showed it
NEXT_ID = "seq:items"
STARTUPS = "lifespan:startups"


class WorkerState(TypedDict):
    """What the lifespan hands to every request of its worker (`request.state`)."""

    worker_pid: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[WorkerState]:
    # Runs once in every worker before it serves: with -w 4 the counter reaches 4.
    state_incr(STARTUPS)
    yield {"worker_pid": os.getpid()}


app = FastAPI(title="hornbeam FastAPI demo", lifespan=lifespan)


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


def _item_key(item_id: int) -> str:
    return f"{ITEM_PREFIX}{item_id}"


@app.post("/items", status_code=201)
async def create_item(item: NewItem) -> dict[str, Any]:
    # state_incr is atomic across workers: no two items ever get the same id
    item_id = state_incr(NEXT_ID)
    record = {"id": item_id, **item.model_dump()}
    state_set(_item_key(item_id), record)
    return record


@app.get("/items")
async def list_items() -> dict[str, Any]:
    records = state_get_multi(state_keys(ITEM_PREFIX))
    items = sorted(records.values(), key=lambda record: record["id"])
    return {"items": items, "count": len(items)}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, Any]:
    record = state_get(_item_key(item_id))
    if record is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {**record, "views": state_incr(f"{VIEWS_PREFIX}{item_id}")}


@app.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int) -> Response:
    key = _item_key(item_id)
    record = state_get(key)
    # delete only what was read: of two concurrent deletes, exactly one gets 204
    if record is None or not state_delete_if(key, record):
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    state_delete(f"{VIEWS_PREFIX}{item_id}")
    return Response(status_code=204)


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    return {
        "items": len(state_keys(ITEM_PREFIX)),
        "last_id": state_get(NEXT_ID) or 0,
        "lifespan_startups": state_get(STARTUPS) or 0,
        "worker_pid": request.state.worker_pid,
    }


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)
