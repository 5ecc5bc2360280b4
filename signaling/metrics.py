"""Prometheus metrics, collected at scrape time from the worker's own counters.

Nothing in the per-packet path calls into prometheus_client: producers and consumers keep plain
integers, and this collector reads them when ``/metrics`` is scraped. A registry per app (no
process-global default registry) keeps several apps in one process (tests) apart.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.demux import DatagramDrop
from sfu.room import retire_counters
from sfu.types import DropReason, PauseReason
from sfu.worker import Worker


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        worker = self.worker
        rooms = worker.rooms
        now = asyncio.get_running_loop().time() if _loop_running() else 0.0
        totals: Counter[str] = Counter(worker.retired)  # participants who left, then live ones
        participants = producers = consumers = 0
        audio_only = {"down": 0, "up": 0}
        paused: Counter[str] = Counter()
        for room in rooms.values():
            for participant in room.participants.values():
                participants += 1
                retire_counters(participant, now, totals)
                producers += len(participant.producers)
                subscriber = participant.subscriber
                if subscriber is not None:
                    consumers += len(subscriber.consumers)
                    if subscriber.downlink.policy.gate.audio_only or \
                            subscriber.downlink.policy.user_audio_only:
                        audio_only["down"] += 1
                    for consumer in subscriber.consumers.values():
                        if consumer.pause_reason is not None:
                            paused[consumer.pause_reason.value] += 1
                if participant.uplink_audio_only:
                    audio_only["up"] += 1
        yield GaugeMetricFamily("diemcau_rooms", "Rooms with at least one participant", len(rooms))
        yield GaugeMetricFamily("diemcau_participants", "Participants connected", participants)
        yield GaugeMetricFamily("diemcau_producers", "Incoming tracks", producers)
        yield GaugeMetricFamily("diemcau_consumers", "Outgoing track copies", consumers)
        counters = [
            ("rtp_received_packets", "received_packets", "RTP packets received from publishers"),
            ("rtp_forwarded_packets", "forwarded_packets", "RTP packets sent to subscribers"),
            ("rtp_forwarded_payload_bytes", "forwarded_bytes", "Payload bytes sent"),
            ("rtp_retransmitted_packets", "retransmitted_packets", "Packets resent on NACK"),
            ("keyframe_requests", "keyframe_requests", "PLIs sent to publishers"),
            ("layer_switches", "layer_switches", "Simulcast layer switches of consumers"),
            ("audio_only_seconds", "audio_only_seconds",
             "Seconds subscribers spent receiving audio only"),
            ("probe_packets", "probe_packets", "Padding packets sent to probe bandwidth"),
        ]
        for name, key, text in counters:
            yield CounterMetricFamily(f"diemcau_{name}", text, totals.get(key, 0))
        dropped = CounterMetricFamily(
            "diemcau_rtp_dropped_packets", "Packets not forwarded, by reason", labels=["reason"]
        )
        for reason in DropReason:
            dropped.add_metric([reason.value], totals.get(f"drop:{reason.value}", 0))
        yield dropped
        garbage = CounterMetricFamily(
            "diemcau_datagram_dropped", "Datagrams on media ports dropped before aioice/aiortc, "
            "by reason", labels=["reason"])
        for drop in DatagramDrop:
            garbage.add_metric([drop.value], worker.datagram_drops.get(drop))
        yield garbage
        only = GaugeMetricFamily("diemcau_audio_only_participants",
                                 "Participants on audio only, by direction", labels=["direction"])
        for direction, count in audio_only.items():
            only.add_metric([direction], count)
        yield only
        pauses = GaugeMetricFamily("diemcau_paused_consumers",
                                   "Consumers sending nothing, by reason", labels=["reason"])
        for reason in PauseReason:
            pauses.add_metric([reason.value], paused.get(reason.value, 0))
        yield pauses


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def make_registry(worker: Worker) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    registry.register(ProcessCollector(registry=None))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
