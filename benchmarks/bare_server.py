"""The reference for the web benchmark: a bare aiohttp handler that reads the body and
answers "success", nothing else (no signature, no Redis). What our web process is measured
against, in the same run, on the same core.

    python -m benchmarks.bare_server PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="success")


async def ready(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/{platform}", webhook)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
