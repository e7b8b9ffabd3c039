"""A provider that streams slowly: each chat-completions stream sends a chunk every second, for a minute.

    python bench/slow.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

INTERVAL, CHUNKS = 1.0, 60


async def chat(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    try:
        for i in range(CHUNKS):
            chunk = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": "slow-model",
                     "choices": [{"index": 0, "delta": {"content": f"{i} "}, "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await asyncio.sleep(INTERVAL)
        await response.write(b"data: [DONE]\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
