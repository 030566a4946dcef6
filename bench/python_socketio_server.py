"""The python-socketio side of the Socket.IO broadcast benchmark: what a Python developer
would deploy instead of n2gateway, ``socketio.AsyncServer`` on aiohttp with its default
options, doing the reference's job (``bench/reference_server.mjs``) under the same
stdin protocol.

    python -m bench.python_socketio_server <port> <room> [websocket|polling]

Prints ``listening``. On stdin, ``run <step> <rate> <seconds>`` broadcasts ``bench``
events ``{t, i, step}`` to the room at ``<rate>``/s on the same 10-ms tick and
catch-up as the other sides, and prints ``done <step> <published>`` at the end."""

from __future__ import annotations

import asyncio
import sys
import time

import socketio
from aiohttp import web

TICK = 0.01


async def broadcast(sio: socketio.AsyncServer, room: str, step: int, rate: float,
                    seconds: float) -> None:
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    started = loop.time()
    published = 0
    while published < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        while published < due:
            await sio.emit("bench", {"t": time.time() * 1000, "i": published, "step": step},
                           room=room)
            published += 1
        await asyncio.sleep(TICK)
    sys.stdout.write(f"done {step} {published}\n")
    sys.stdout.flush()


async def commands(sio: socketio.AsyncServer, room: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command, *args = line.decode().split()
        if command == "run":
            step, rate, seconds = args
            loop.create_task(broadcast(sio, room, int(step), float(rate), float(seconds)))


async def serve(port: int, room: str, transport: str) -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=[transport])

    @sio.on("subscribe")
    async def subscribe(sid, name):
        await sio.enter_room(sid, name)
        return {"ok": True}

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    await commands(sio, room)  # stdin closed: the bench is done with this side
    await runner.cleanup()


if __name__ == "__main__":
    port, room, *rest = sys.argv[1:]
    asyncio.run(serve(int(port), room, rest[0] if rest else "websocket"))
