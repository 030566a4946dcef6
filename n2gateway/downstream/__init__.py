"""Downstream clients: token auth and the WebSocket endpoints (plain JSON, Socket.IO)."""
