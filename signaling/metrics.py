"""Prometheus metrics, collected at scrape time from the media plane's own counters.

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

from sfu.plane import MediaPlane
from sfu.types import DropReason, PauseReason
from sfu.wire.demux import DatagramDrop


class MediaPlaneCollector(Collector):
    def __init__(self, plane: MediaPlane) -> None:
        self.plane = plane

    def collect(self) -> Iterator[Metric]:
        stats = self.plane.stats()
        totals, audio_only, paused = stats.totals, stats.audio_only, stats.paused
        rooms, participants, producers, consumers = (
            stats.rooms, stats.participants, stats.producers, stats.consumers)
        yield GaugeMetricFamily("diemcau_rooms", "Rooms with at least one participant", rooms)
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
            ("media_workers_lost", "workers_lost", "SFU worker processes lost (died or hung)"),
            ("recorder_packets_shed", "recorder_packets_shed",
             "Recorded packets a worker process shed because signaling did not keep up"),
            ("media_worker_reports", "plane_reports_out", "Frames worker processes sent "
             "signaling besides stats and recorder RTP (events, replies): none per packet"),
            ("media_worker_calls", "plane_calls_in",
             "Calls signaling sent worker processes, relay RTP aside"),
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
            garbage.add_metric([drop.value], stats.datagram_drops.get(drop.value, 0))
        yield garbage
        only = GaugeMetricFamily("diemcau_audio_only_participants",
                                 "Participants on audio only, by direction", labels=["direction"])
        for direction, count in audio_only.items():
            only.add_metric([direction], count)
        yield only
        pauses = GaugeMetricFamily("diemcau_paused_consumers",
                                   "Consumers sending nothing, by reason", labels=["reason"])
        for pause in PauseReason:
            pauses.add_metric([pause.value], paused.get(pause.value, 0))
        yield pauses


class RefusalCollector(Collector):
    """Signaling input refused by a limit (signaling/limits.py), by reason."""

    def __init__(self, refusals: Counter[str]) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily("diemcau_signaling_refused",
                                      "Signaling messages or sockets refused by a limit",
                                      labels=["reason"])
        for reason, count in sorted(self.refusals.items()):
            refused.add_metric([reason], count)
        yield refused


class RecordingCollector(Collector):
    """Recordings stopped by a failure (disk full or too slow...), by reason (WriterError)."""

    def __init__(self, failures: Counter[str], reasons: tuple[str, ...] = ()) -> None:
        self.failures = failures
        self.reasons = reasons  # always exported, at 0 until they happen

    def collect(self) -> Iterator[Metric]:
        failed = CounterMetricFamily("diemcau_recording_failures",
                                     "Recordings stopped by a failure, by reason",
                                     labels=["reason"])
        for reason in sorted(set(self.reasons) | set(self.failures)):
            failed.add_metric([reason], self.failures.get(reason, 0))
        yield failed


def make_registry(plane: MediaPlane, refusals: Counter[str] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MediaPlaneCollector(plane))
    if refusals is not None:
        registry.register(RefusalCollector(refusals))
    registry.register(ProcessCollector(registry=None))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
