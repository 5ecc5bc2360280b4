"""Media-plane shells start nothing in their constructors; close() stops and awaits what start()
began (sfu/scheduler.py, Subscriber, Publisher, Worker)."""

import asyncio

from aiortc import RTCPeerConnection

from sfu.publisher import Publisher
from sfu.scheduler import Scheduler
from sfu.subscriber import Subscriber
from sfu.worker import MediaConfig, Worker


async def _no_offer(sdp: str, tracks: object) -> None:
    pass


async def test_subscriber_starts_in_start_and_close_awaits() -> None:
    scheduler = Scheduler()
    loop = asyncio.get_running_loop()
    tasks_before = asyncio.all_tasks()
    subscriber = Subscriber("sub", RTCPeerConnection(), _no_offer, loop.time,
                            scheduler=scheduler)
    assert len(scheduler) == 0 and asyncio.all_tasks() == tasks_before
    subscriber.start()
    assert len(scheduler) == 2  # bandwidth tick, sender reports
    task = subscriber.negotiator._task
    assert task is not None and not task.done()
    await subscriber.close()
    assert len(scheduler) == 0
    assert task.done()  # cancelled and awaited, not left pending
    assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}


async def test_subscriber_closed_without_start() -> None:
    subscriber = Subscriber("sub", RTCPeerConnection(), _no_offer,
                            asyncio.get_running_loop().time)
    await subscriber.close()
    subscriber.start()  # after close: nothing starts
    assert subscriber.negotiator._task is None


async def test_publisher_feedback_timer_only_between_start_and_close() -> None:
    scheduler = Scheduler()
    publisher = Publisher("pub", RTCPeerConnection(), lambda producer: None,
                          asyncio.get_running_loop().time, scheduler=scheduler)
    publisher.start()
    assert len(scheduler) == 0  # no transport-cc negotiated: no feedback timer
    publisher._twcc_ext_id = 3  # as Publisher.answer sets it for a transport-cc offer
    publisher._start_feedback()
    assert len(scheduler) == 1
    await publisher.close()
    assert len(scheduler) == 0


async def test_worker_timers_end_with_close() -> None:
    worker = Worker(MediaConfig())
    assert len(worker.scheduler) == 0
    worker.start()
    assert len(worker.scheduler) == 1 + (worker.trimmer is not None)  # + sfu/memtune.py's check
    await worker.close()
    assert len(worker.scheduler) == 0 and worker.scheduler.closed


async def test_a_closed_subscriber_and_publisher_are_freed_without_the_collector() -> None:
    """Their parts hold callbacks into them (bound methods, closures): ``close`` breaks those
    cycles, so reference counting frees them at once (sfu/gctune.py)."""
    import gc
    import weakref

    scheduler = Scheduler()
    loop = asyncio.get_running_loop()
    gc.collect()
    gc.disable()
    try:
        subscriber = Subscriber("sub", RTCPeerConnection(), _no_offer, loop.time,
                                scheduler=scheduler)
        subscriber.use_video_slots(9)
        publisher = Publisher("pub", RTCPeerConnection(), lambda producer: None, loop.time,
                              scheduler=scheduler)
        subscriber.start()
        publisher.start()
        refs = [weakref.ref(subscriber), weakref.ref(subscriber.pc),
                weakref.ref(publisher), weakref.ref(publisher.pc)]
        await subscriber.close()
        await publisher.close()
        del subscriber, publisher
        assert [ref() for ref in refs] == [None] * 4
    finally:
        gc.enable()
