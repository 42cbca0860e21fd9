"""A tiny ASGI app for the `grace run` tests, as wsgi_app.py."""
import asyncio
import os
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        ms = int(parse_qs(scope["query_string"].decode()).get("ms", ["1000"])[0])
        await asyncio.sleep(ms / 1000)
    body = f"hello from {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
