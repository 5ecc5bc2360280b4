"""Prometheus metrics, collected at scrape time from the worker's own counters.

Nothing in the per-packet path calls into prometheus_client: producers and consumers keep plain
integers, and this collector reads them when ``/metrics`` is scraped. A registry per app (no
process-global default registry) keeps several apps in one process (tests) apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.types import DropReason
from sfu.worker import Worker


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        rooms = self.worker.rooms
        participants = producers = consumers = 0
        received = forwarded = forwarded_bytes = retransmitted = keyframe_requests = 0
        drops: Counter[DropReason] = Counter()
        for room in rooms.values():
            for participant in room.participants.values():
                participants += 1
                if participant.publisher is not None:
                    drops.update(participant.publisher.drops)
                for producer in participant.producers:
                    producers += 1
                    received += producer.packets_received
                    keyframe_requests += producer.keyframe_requests_sent
                    for consumer in producer.consumers:
                        consumers += 1
                        forwarded += consumer.packets_sent
                        forwarded_bytes += consumer.octets_sent
                        retransmitted += consumer.retransmitted
                        drops.update(consumer.drops)
        yield GaugeMetricFamily("diemcau_rooms", "Rooms with at least one participant", len(rooms))
        yield GaugeMetricFamily("diemcau_participants", "Participants connected", participants)
        yield GaugeMetricFamily("diemcau_producers", "Incoming tracks", producers)
        yield GaugeMetricFamily("diemcau_consumers", "Outgoing track copies", consumers)
        # Counters of live objects: they restart when participants leave (scrape-time view).
        yield CounterMetricFamily(
            "diemcau_rtp_received_packets", "RTP packets received from live producers", received
        )
        yield CounterMetricFamily(
            "diemcau_rtp_forwarded_packets", "RTP packets sent to live consumers", forwarded
        )
        yield CounterMetricFamily(
            "diemcau_rtp_forwarded_payload_bytes", "Payload bytes sent to live consumers",
            forwarded_bytes,
        )
        yield CounterMetricFamily(
            "diemcau_rtp_retransmitted_packets", "Packets resent on NACK", retransmitted
        )
        yield CounterMetricFamily(
            "diemcau_keyframe_requests", "PLIs sent to publishers", keyframe_requests
        )
        dropped = CounterMetricFamily(
            "diemcau_rtp_dropped_packets", "Packets not forwarded, by reason", labels=["reason"]
        )
        for reason in DropReason:
            dropped.add_metric([reason.value], drops.get(reason, 0))
        yield dropped


def make_registry(worker: Worker) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    registry.register(ProcessCollector(registry=None))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
