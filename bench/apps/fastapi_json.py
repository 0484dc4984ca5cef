"""The FastAPI case of the side-by-side benchmark (bench/peers.py): one JSON endpoint.

A typical small API handler: a path operation returning a dict that FastAPI serialises.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def status() -> dict[str, object]:
    """A small JSON document, as a health or status endpoint would return."""
    return {"message": "Hello, World!", "ok": True, "items": [1, 2, 3]}
