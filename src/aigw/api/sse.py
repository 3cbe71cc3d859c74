"""Server-Sent Events output shared by the chat routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import anyio

_AHEAD = 64  # frames the producer may run ahead of the socket


async def coalesced(frames: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
    """Send together the frames that are ready together.

    An upstream often delivers many chunks in one read; relayed one by one, each costs an ASGI send
    through every middleware and a socket write (measured: most of a proxied stream's CPU). A producer
    task runs ahead by up to `_AHEAD` frames and the response writes whatever has accumulated.
    """
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(_AHEAD)
    failure: list[BaseException] = []

    async def produce() -> None:
        try:
            async for frame in frames:
                await queue.put(frame)
        except Exception as exc:  # re-raised in the consumer, where the response can report it
            failure.append(exc)
        await queue.put(None)  # not reached when cancelled: then nobody is reading

    producer = asyncio.create_task(produce())
    try:
        while True:
            batch = [await queue.get()]
            while batch[-1] is not None and not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is None
            data = b"".join(frame for frame in batch if frame is not None)
            if data:
                yield data
            if ended:
                break
        if failure:
            raise failure[0]
    finally:
        producer.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(producer, return_exceptions=True)
            await frames.aclose()
