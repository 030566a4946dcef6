"""
Reusable machinery for the gateway's long-lived upstream WebSocket sessions.

A provider plugin builds an :class:`UpstreamService` around a protocol of its own
(for example Phoenix Channels for Pancake, Socket.IO for TPOS). The service reconnects
with backoff, reports its state through an :class:`UpstreamStatus` and hands every
upstream event to a callback; it knows nothing of the database or the hub.
A :class:`provider.Provider` ties one such session to the credentials stored in the
database and to the control routes.
"""
