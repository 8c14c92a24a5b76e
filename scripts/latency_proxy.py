#!/usr/bin/env python3
"""A TCP proxy that adds a fixed delay to every HTTP request, for benchmarks at the
latency of a remote S3 (10-50 ms before the first byte) in front of Garage on loopback.

    python3 scripts/latency_proxy.py --upstream 127.0.0.1:3900 --delay-ms 30 [--port 0]

Prints ``listening on 127.0.0.1:PORT`` once ready. On each connection, the first bytes the
client sends after the server last answered (the start of a request: HTTP/1.1 keeps one
request in flight per connection) wait ``--delay-ms`` before they are forwarded; every
other byte passes at once. Requests on several connections wait side by side, as they
would on a distant server.
"""

from __future__ import annotations

import argparse
import asyncio


async def pipe_requests(reader, writer, state: dict, delay: float) -> None:
    while data := await reader.read(1 << 16):
        if state["idle"]:
            state["idle"] = False
            await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()
    writer.close()


async def pipe_answers(reader, writer, state: dict) -> None:
    while data := await reader.read(1 << 16):
        state["idle"] = True
        writer.write(data)
        await writer.drain()
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--delay-ms", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    delay = args.delay_ms / 1000

    async def serve(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        state = {"idle": True}
        try:
            await asyncio.gather(
                pipe_requests(client_reader, up_writer, state, delay),
                pipe_answers(up_reader, client_writer, state),
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_writer.close()
            up_writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", args.port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
