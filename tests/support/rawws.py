"""A WebSocket client on a plain blocking socket, for floods: it writes frames as fast
as the socket takes them and reads only when asked to, so it can be the client that
never reads its answers. Used by tests/adversarial and bench/floods.py against a
gateway in another process."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

PING, PONG, TEXT, CLOSE = 9, 10, 1, 8


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final client frame, masked as RFC 6455 wants."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    def __init__(self, port: int, path: str, receive_buffer: int | None = None,
                 timeout: float = 30.0) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:  # small: the gateway's writes back up sooner
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self._data = b""
        while b"\r\n\r\n" not in self._data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self._data += chunk
        head, _, self._data = self._data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        #: The handshake answer's headers, names in lower case.
        self.headers = dict((name.strip().lower(), value.strip()) for name, _, value in
                            (line.partition(":") for line in head.decode().split("\r\n")[1:]))
        self.close_code: int | None = None
        self.close_reason = ""

    def send(self, data: bytes) -> bool:
        """Write ``data`` (whole frames); False once the gateway has dropped us."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def send_json(self, value) -> bool:
        return self.send(frame(TEXT, json.dumps(value).encode()))

    def flood(self, one: bytes, count: int, per_write: int = 1000) -> int:
        """Send ``one`` (a frame) ``count`` times without reading; how many went out
        before the gateway dropped the connection."""
        chunk = one * per_write
        sent = 0
        while sent < count:
            if not self.send(chunk):
                break
            sent += per_write
        return sent

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next server frame, None at the end of the stream."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return None
            self._data += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        data = self._data
        if len(data) < 2:
            return None
        opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                return None
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                return None
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + size:
            return None
        payload, self._data = data[at:at + size], data[at + size:]
        if opcode == CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if payload else None
            self.close_reason = payload[2:].decode(errors="replace")
        return opcode, payload

    def texts(self, count: int) -> list[str]:
        """The next ``count`` text frames (fewer if the stream ends)."""
        found: list[str] = []
        while len(found) < count:
            got = self.next_frame()
            if got is None:
                break
            if got[0] == TEXT:
                found.append(got[1].decode())
        return found

    def receive_until(self, kind: str, limit: int = 20) -> dict:
        """The next JSON text frame of type ``kind``, among the next ``limit`` text
        frames; pings on the way are answered, as a client that stays must."""
        for _ in range(limit):
            while (got := self.next_frame()) is not None and got[0] != TEXT:
                if got[0] == PING:
                    self.send(frame(PONG, got[1]))
            if got is None:
                raise ConnectionError(f"the gateway closed the WebSocket: {self.close_code} "
                                      f"{self.close_reason}")
            message = json.loads(got[1])
            if message.get("type") == kind:
                return message
        raise AssertionError(f"no {kind} frame in {limit}")

    def read_to_close(self) -> tuple[int | None, str]:
        """Read everything up to the close frame or the end: its code and reason."""
        while self.close_code is None and self.next_frame() is not None:
            pass
        return self.close_code, self.close_reason

    def close(self) -> None:
        self.sock.close()
