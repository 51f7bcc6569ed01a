"""The FastAPI app of bench/asgi.py: what a small JSON API does per request
(a path parameter, a query parameter with a default, a validated response model)."""
from fastapi import FastAPI
from pydantic import BaseModel

api = FastAPI()


class Item(BaseModel):
    item_id: int
    q: str | None
    limit: int
    tags: list[str]


@api.get("/items/{item_id}", response_model=Item)
async def read_item(item_id: int, q: str | None = None, limit: int = 10) -> Item:
    return Item(item_id=item_id, q=q, limit=limit, tags=["bench", "fastapi"])
