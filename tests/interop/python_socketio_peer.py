"""python-socketio's own client with its default options (polling, then the
upgrade), driven like socketio_peer.mjs: JSON commands on stdin, JSON records out.

python-socketio has no connection state recovery: ``recovered`` is always false.
"""

import json
import os
import sys
import threading

import socketio

lock = threading.Lock()
client = socketio.Client(reconnection_delay=0.7, reconnection_delay_max=0.7,
                         randomization_factor=0)


def out(record: dict) -> None:
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


@client.event
def connect():
    out({"type": "connect", "recovered": False, "transport": client.transport()})


@client.event
def connect_error(data):
    # The server's CONNECT_ERROR data, or a string for a failed connection.
    out({"type": "connect_error",
         "message": data.get("message") if isinstance(data, dict) else str(data)})


@client.event
def disconnect(reason=None):
    out({"type": "disconnect", "reason": str(reason)})


@client.on("*")
def any_event(event, *args):
    out({"type": "event", "event": event, "args": list(args)})


def emit(command: dict) -> None:
    tag = command.get("tag")
    client.emit(command["event"], tuple(command["args"]),
                callback=lambda answer: out({"type": "ack", "tag": tag, "answer": answer}))


def main() -> None:
    # A test that dies must not leave this process behind.
    watchdog = threading.Timer(60, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "connect":
            client.connect(command["url"], auth=command["auth"], wait_timeout=10,
                           **command.get("options", {}))
        elif command["op"] == "emit":
            emit(command)
        elif command["op"] == "closeTransport":
            client.eio.disconnect(abort=True)
        elif command["op"] == "exit":
            break
    client.disconnect()


if __name__ == "__main__":
    main()
