"""Support staff are told of each scheduled meeting at the configured lead time (default 1 h),
once per occurrence, in the console's list and as a ``meeting_reminder`` webhook (issue 13).
The clock is injected."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from signaling.config import HookSettings
from signaling.support import SupportNotifier
from signaling.webhooks import WebhookService
from tests.pgproc import open_store_for

ICT = dt.timezone(dt.timedelta(hours=7))
START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=ICT).timestamp()  # a Monday, 09:00 +07:00


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_notice_fires_at_its_lead_time_once(tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        org = await store.create_organisation("Da Nang")
        room = await store.create_room("danang-ubnd", org.id)
        meeting = await store.create_meeting(room.id, "Giao ban tuan", "2026-12-07", "09:00",
                                             "10:30", weekly=True)
        hooks = HookSettings(webhook_urls=("http://127.0.0.1:9/hook",),
                             webhook_secret="x" * 32)  # default lead: 1 h
        clock = Clock(START - 2 * 3600)
        webhooks = WebhookService(store, hooks, clock=clock)
        notifier = SupportNotifier(store, hooks, webhooks, clock=clock)
        assert await notifier.check() == []  # two hours ahead: not yet
        clock.now = START - 3600 - 1
        assert await notifier.check() == []  # one second before the lead time
        clock.now = START - 3600
        sent = await notifier.check()
        assert [(n.meeting_id, n.room, n.starts_at) for n in sent] == [
            (meeting.id, "danang-ubnd", START)]
        clock.now = START - 1800
        assert await notifier.check() == []  # once per occurrence
        restarted = SupportNotifier(store, hooks, WebhookService(store, hooks, clock=clock),
                                    clock=clock)
        assert await restarted.check() == []  # also after a restart (the store remembers)
        await webhooks.flush()
        rows = [row for row in await store.list_webhooks() if row.event == "meeting_reminder"]
        assert len(rows) == 1
        data = json.loads(rows[0].body)["data"]
        assert data == {"meeting_id": meeting.id, "room": "danang-ubnd",
                        "title": "Giao ban tuan", "starts_at": START, "minutes_before": 60}
        listed = await store.list_support_notices(START - 86400)
        assert [(n.title, n.sent_at) for n in listed] == [("Giao ban tuan", START - 3600)]
        clock.now = START + 7 * 86400 - 3600  # the next weekly occurrence: its own notice
        assert [n.starts_at for n in await notifier.check()] == [START + 7 * 86400]
    finally:
        await store.close()


async def test_lead_time_is_configurable_and_a_late_start_still_notifies(
        tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        org = await store.create_organisation("Hue")
        room = await store.create_room("hue", org.id)
        await store.create_meeting(room.id, "Hop", "2026-12-07", "09:00", "10:00", weekly=False)
        clock = Clock(START - 16 * 60)
        notifier = SupportNotifier(store, HookSettings(support_lead_s=15 * 60), clock=clock)
        assert await notifier.check() == []
        clock.now = START - 15 * 60
        assert len(await notifier.check()) == 1
        # A server started after the lead time (down at 08:00) still tells support before 09:00.
        late = SupportNotifier(store, HookSettings(), clock=Clock(START - 60))
        await store.create_meeting(room.id, "Hop 2", "2026-12-07", "09:00", "09:30",
                                   weekly=False)
        assert [n.title for n in await late.check()] == ["Hop 2"]
        clock.now = START + 60  # started: no notice for a meeting already on
        await store.create_meeting(room.id, "Hop 3", "2026-12-07", "09:00", "09:45",
                                   weekly=False)
        assert await notifier.check() == []
    finally:
        await store.close()
