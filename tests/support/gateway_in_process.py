"""A ``Gateway`` service in the test's own process, on the real reactor: for tests
that look inside it (the hub's sessions, the journal's queue) while real clients
talk to it over real sockets. ``conftest.gateway_factory`` starts and stops them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor

from n2gateway.config import Settings
from n2gateway.gateway import Gateway
from n2gateway.plugins import load_plugins
from tests.support.gateway import SOURCE_PLUGINS, free_port
from tests.support.waiting import eventually


class GatewayInProcess:
    """A ``Gateway`` service listening on a free loopback port, on the real reactor."""

    def __init__(self, tmp_path: Path, database_url: str, **settings: Any) -> None:
        self.port = free_port()
        self.settings = Settings(http=f"tcp:{self.port}:interface=127.0.0.1",
                                 database_url=database_url, data_dir=tmp_path, **settings)
        self.gateway = Gateway(self.settings, load_plugins(disabled=SOURCE_PLUGINS), reactor)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "GatewayInProcess":
        self.gateway.privilegedStartService()
        self.gateway.startService()
        await eventually(lambda: self.gateway.hub.ready, 30, "the hub to be ready")
        return self

    async def stop(self) -> None:
        await self.gateway.stopService()

    async def publish(self, rooms: list[str], event: str = "e", payload: Any = None,
                      token: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = await treq.post(self.url + "/api/publish", headers=headers,
                                 json={"rooms": rooms, "event": event, "payload": payload})
        return answer.code, await answer.json()

    async def status(self, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = await treq.get(self.url + "/api/hub/status", headers=headers)
        assert answer.code == 200
        return await answer.json()
