"""A minimal, fast webhook receiver (raw ASGI under uvicorn) for delivery benchmarks.

Answers 204 to every POST and counts requests; GET /count returns the count.
Run: python benchmarks/_receiver.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

count = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global count
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    body = b""
    if scope["method"] == "POST":
        count += 1
    else:
        body = str(count).encode()
    await send({"type": "http.response.start", "status": 204 if not body else 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
