"""What every downstream WebSocket connection shares, whatever its protocol:
a hub session, the bounded outbox under it, and quiet logging."""

from __future__ import annotations

from typing import Sequence

import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage

from n2gateway.downstream.auth import Identity
from n2gateway.downstream.outbox import SLOW_CONSUMER_CODE, Outbox
from n2gateway.downstream.write_now import write_now
from n2gateway.hub import Session

# Application close codes (WebSocket reserves all but 1000 and 3000-4999 for itself).
CLOSE_UNAUTHORIZED = 4001
CLOSE_NOT_READY = 4013  # the gateway is starting: try again shortly
CLOSE_GOING_AWAY = 4101  # the gateway is stopping: reconnect (elsewhere) and resume
#: A slow consumer reads its backlog before it reaches the 4008 close frame: it gets
#: longer than the usual close handshake to see why it was closed.
SLOW_CLOSE_TIMEOUT = 10


class DownstreamProtocol(WebSocketServerProtocol):
    # Autobahn logs the whole opening request at debug level, and its query string
    # carries the client's token (/ws?token=...): this logger never goes below info.
    log = txaio.make_logger(level="info")

    session: Session | None = None
    outbox: Outbox | None = None

    def start_session(self, identity: Identity) -> Session:
        """Attach to the hub as ``identity``, already in its own ``user:<sub>`` room."""
        self.outbox = Outbox(self.send_frames, self._close_from_hub)
        # twisted.web's channel was the transport's producer until the WebSocket took
        # the connection over; the outbox is now.
        self.transport.unregisterProducer()
        self.outbox.attach(self.transport)
        self.session = self.factory.hub.connect(identity, self.factory.wire, self.outbox)
        self.session.join(identity.own_room)
        return self.session

    def send_frames(self, frames: Sequence[PreparedMessage]) -> None:
        """The outbox's way out: ``frames`` in one write, straight to the socket when
        nothing is queued before them.

        The broadcast hot path, once per receiver and batch of events. Autobahn's
        ``sendPreparedMessage`` builds the (colourised) arguments of a debug log line
        on every call, debug on or not, and leaves the bytes to the reactor's next
        pass. Every endpoint refuses compression, so the prepared bytes are what it
        would write.
        """
        if self._perMessageCompress is None and not self.send_queue:
            write_now(self.transport, b"".join(frame.payloadHybi for frame in frames))
        else:
            for frame in frames:
                self.sendPreparedMessage(frame)

    def _close_from_hub(self, code: int, reason: str) -> None:
        if code == SLOW_CONSUMER_CODE:
            self.factory.slow_closed += 1
            self.closeHandshakeTimeout = SLOW_CLOSE_TIMEOUT
        # Out of the hub at once: a closing client gets no more events and no longer
        # counts, however long its close handshake takes.
        if self.session is not None:
            self.session.close()
            self.session = None
        self.sendClose(code, reason)

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
