"""Reading request bodies in the webhook API, after the token was checked: JSON bodies capped in size
(413) and parsed into a model (422), and every body piece awaited at most an idle timeout (408).

No endpoint declares a FastAPI body parameter, because FastAPI reads and parses such a body before the
route's dependencies (the token check) run; endpoints call these helpers instead.
Requires: nothing beyond Starlette and pydantic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from deployments.upload import ApiError

M = TypeVar("M", bound=BaseModel)


class BodyIdle(ApiError):
    """The client sent no byte of its body for ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        super().__init__(408, f"no request body data for {timeout:g} s: request timed out",
                         "send the body without pauses; retry the request",
                         headers={"Connection": "close"})


async def body_pieces(request: Request, idle_timeout: float | None) -> AsyncIterator[bytes]:
    """The request body piece by piece; a wait longer than ``idle_timeout`` for the next piece is a 408."""
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_timeout):
                piece = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyIdle(idle_timeout or 0) from None
        if piece:
            yield piece


async def read_json(request: Request, model: type[M], limit: int, idle_timeout: float | None = None) -> M:
    """The JSON body as ``model``: 415 unless JSON, 413 past ``limit`` bytes (never read further), 422 if invalid."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "expected a JSON body", "send it with Content-Type: application/json")
    too_large = ApiError(413, f"JSON body larger than the limit of {limit} bytes",
                         "send only the documented fields", headers={"Connection": "close"})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for piece in body_pieces(request, idle_timeout):
        body += piece
        if len(body) > limit:
            raise too_large
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as exc:
        # Only where and what: the rejected input itself is not echoed back.
        detail = [{"loc": ["body", *e.get("loc", ())], "msg": e.get("msg")} for e in exc.errors()]
        raise ApiError(422, "invalid request", detail) from None
