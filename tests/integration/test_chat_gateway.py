"""The chat sync inside a real ``twistd n2gateway``, killed while writers go on."""

from __future__ import annotations

import pytest_twisted

from tests.integration.chat_harness import writer
from tests.support.gateway import GatewayProcess
from tests.support.waiting import eventually, sleep


async def chat_status(gateway: GatewayProcess) -> dict:
    """The chat plugin's status once it listens and has caught up (has a cursor)."""
    async def caught_up() -> dict | None:
        chat = (await gateway.wait_healthy())["plugins"].get("chat", {})
        return chat if chat.get("listening") and chat.get("cursor") is not None else None

    return await eventually(caught_up, 60, lambda: f"chat caught up:\n{gateway.log_text()}", 0.1)


@pytest_twisted.ensureDeferred
async def test_sigkill_and_restart_relays_every_message_exactly_once_in_order(
        tmp_path, database_url, sql):
    gateway = GatewayProcess(tmp_path, database_url=database_url).start()
    backends = [writer(database_url), writer(database_url)]
    written: list[int] = []

    async def write(count: int) -> None:
        for i in range(count):
            with backends[i % 2].cursor() as cur:
                cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (%s, 'student', %s)"
                            " RETURNING chat_id", (i % 5, f"m{len(written)}"))
                written.append(cur.fetchone()[0])
            await sleep(0.002)

    try:
        await chat_status(gateway)
        await write(100)
        await gateway.kill()  # SIGKILL: no clean shutdown, possibly mid-transaction
        await write(100)  # nobody is listening now
        gateway.start()
        await chat_status(gateway)
        await write(100)

        def relayed() -> list[int]:
            return [chat_id for (chat_id,) in sql(
                "SELECT (payload ->> 'chat_id')::int FROM n2_journal"
                " WHERE event = 'message:new' ORDER BY seq")]

        await eventually(lambda: len(relayed()) >= len(written), 20, "every message relayed")
        assert relayed() == written
        status = await chat_status(gateway)
        assert status["cursor"] == written[-1]
        await gateway.terminate()  # twistd re-raises SIGTERM after a clean stop
        assert "gateway stopped" in gateway.log_text()
        assert "Traceback" not in gateway.log_text()
    finally:
        gateway.ensure_stopped()
        for backend in backends:
            backend.close()
