"""A provider that streams slowly: each chat-completions stream sends a chunk every INTERVAL seconds, EVENTS
chunks in all (by default one a second for a minute), then `[DONE]`.

    python bench/slow.py PORT [EVENTS [INTERVAL]]
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

INTERVAL, CHUNKS = 1.0, 60


def streamer(chunks: int, interval: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(chunks):
                chunk = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1,
                         "model": "slow-model", "choices": [{"index": 0, "delta": {"content": f"{i} "},
                                                             "finish_reason": None}]}
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(interval)
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response
    return chat


def main() -> None:
    chunks = int(sys.argv[2]) if len(sys.argv) > 2 else CHUNKS
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else INTERVAL
    app = web.Application()
    app.router.add_post("/v1/chat/completions", streamer(chunks, interval))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
