"""The connection registry's periodic refresh (realtime/registry.py): the instance row every time,
and only the frame counters that changed since they were last written."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from realtime.models import Connection as ConnectionRecord
from realtime.models import Instance
from realtime.registry import Registry

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Live:
    id: str
    frames_in: int = 0
    frames_out: int = 0
    user_id: str | None = None
    username: str = ""
    endpoint: str = "chat"
    client_addr: str = "127.0.0.1"
    connected_at: float = 0.0


async def test_refresh_writes_only_the_counters_that_changed(monkeypatch):
    monkeypatch.setattr("realtime.registry.BATCH", 2)  # several chunks
    live = {f"c{n}": Live(f"c{n}") for n in range(5)}
    registry = Registry("i1", live=live)  # type: ignore[arg-type]
    for conn in live.values():
        registry.opened(conn)  # type: ignore[arg-type]
    await registry.flush()
    await registry.refresh()
    assert await Instance.objects.filter(id="i1", connections=5).aexists()

    written: list[list[str]] = []
    write = registry._write_counters

    def recording(rows):
        written.append(sorted(conn_id for conn_id, _ in rows))
        write(rows)

    monkeypatch.setattr(registry, "_write_counters", recording)
    live["c1"].frames_in, live["c3"].frames_out = 4, 7
    await registry.refresh()
    assert written == [["c1", "c3"]]  # only what changed
    rows = {row.id: (row.frames_in, row.frames_out) async for row in ConnectionRecord.objects.all()}
    assert rows["c1"] == (4, 0) and rows["c3"] == (0, 7) and rows["c0"] == (0, 0) and len(rows) == 5

    written.clear()
    await registry.refresh()  # nothing changed: the instance row only
    assert written == []
