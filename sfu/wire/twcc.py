"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Every packet we send to a subscriber carries a 16-bit transport-wide sequence number (header
extension); the browser answers with RTCP transport feedback that gives each packet's arrival
time, and ``sfu.policy.bwe`` estimates the downlink from that. In the other direction we record what
publishers send us and return the same feedback, so Chrome's own estimator works on the uplink.

Transport feedback (RTPFB, PT=205, FMT=15)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |V=2|P|  FMT=15 |    PT=205     |           length              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     SSRC of packet sender                     |
    |                      SSRC of media source                     |
    |      base sequence number     |      packet status count      |
    |                 reference time                | fb pkt. count |
    |          packet chunk         |         packet chunk          |
    .                              ...                              .
    |         recv delta            |  recv delta   | zero padding  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Packet chunks (16 bits each) give one status per reported packet: 0 not received, 1 received with
a small delta (1 byte, unsigned, 250 us units), 2 received with a large delta (2 bytes, signed).
- run length:    |0|S S|      run length (13 bits)     |
- 1-bit vector:  |1|0| 14 symbols, 1 bit each (0 or 1)  |
- 2-bit vector:  |1|1| 7 symbols, 2 bits each           |
The first delta is relative to reference time * 64 ms, each later one to the previous received
packet. The reference time is a signed 24-bit counter in the feedback sender's own clock.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field

from sfu.wire.seqmath import ref24_diff, seq_add, seq_diff

__all__ = [
    "REFERENCE_TIME_US",
    "RTCP_RTPFB",
    "TRANSPORT_CC_FMT",
    "FeedbackRecorder",
    "TransportFeedback",
    "TransportSequencer",
]

TRANSPORT_CC_FMT = 15
RTCP_RTPFB = 205

_HEADER = struct.Struct("!BBHIIHHI")  # first byte, PT, length, 2 SSRCs, base, count, ref|fbcount
_HEADER_SIZE = _HEADER.size  # 20
REFERENCE_TIME_US = 64_000  # the unit of the 24-bit reference time
_DELTA_US = 250
_TICKS_PER_REF = REFERENCE_TIME_US // _DELTA_US  # 256
_MAX_RUN = 0x1FFF

NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2


@dataclass
class TransportFeedback:
    """One transport feedback packet.

    ``arrivals`` has one entry per reported packet, in sequence order from ``base_sequence``:
    (transport sequence number, arrival time in microseconds after ``reference_time * 64 ms``), or
    (sequence number, None) for a packet not received. Arrival times are multiples of 250 us on the
    wire; other values are rounded when serialized.
    """

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int
    feedback_count: int
    arrivals: list[tuple[int, int | None]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> TransportFeedback:
        """Parse one whole RTCP packet (header included); raise ValueError on anything malformed."""
        size = len(data)
        if size < _HEADER_SIZE:
            raise ValueError(f"transport feedback is truncated: {size} bytes, need 20")
        first, pt, length, sender, media, base, count, ref_and_fb = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError(f"transport feedback has RTP version {first >> 6}, expected 2")
        if pt != RTCP_RTPFB:
            raise ValueError(f"transport feedback has packet type {pt}, expected 205")
        if first & 0x1F != TRANSPORT_CC_FMT:
            raise ValueError(f"transport feedback has FMT {first & 0x1F}, expected 15")
        declared = (length + 1) * 4
        if declared > size:
            raise ValueError(
                f"transport feedback is truncated: length field says {declared} bytes, got {size}"
            )
        if declared < size:
            raise ValueError(f"transport feedback has {size - declared} bytes after its length")
        end = size
        if first & 0x20:
            # RFC 3550: the last byte counts the padding bytes, itself included.
            padding = data[-1]
            if padding == 0 or padding > size - _HEADER_SIZE:
                raise ValueError(f"transport feedback has an invalid padding count {padding}")
            end -= padding
        if count == 0:
            raise ValueError("transport feedback reports no packets")

        statuses, pos = _parse_chunks(data, _HEADER_SIZE, end, count)

        arrivals: list[tuple[int, int | None]] = []
        ticks = 0
        for i, status in enumerate(statuses):
            seq = seq_add(base, i)
            if status == NOT_RECEIVED:
                arrivals.append((seq, None))
                continue
            if status == SMALL_DELTA:
                if pos >= end:
                    raise ValueError(f"transport feedback is truncated: delta of packet {i}")
                ticks += data[pos]
                pos += 1
            else:
                if pos + 2 > end:
                    raise ValueError(f"transport feedback is truncated: delta of packet {i}")
                ticks += int.from_bytes(data[pos : pos + 2], "big", signed=True)
                pos += 2
            arrivals.append((seq, ticks * _DELTA_US))
        # Bytes left between the last delta and the end are the draft's "zero padding" that old
        # senders put without the P bit: tolerated, like libwebrtc does.
        return cls(
            sender_ssrc=sender,
            media_ssrc=media,
            base_sequence=base,
            reference_time=ref24_diff(ref_and_fb >> 8, 0),
            feedback_count=ref_and_fb & 0xFF,
            arrivals=arrivals,
        )

    def __bytes__(self) -> bytes:
        arrivals = self.arrivals
        if not arrivals:
            raise ValueError("transport feedback must report at least one packet")
        if len(arrivals) > 0xFFFF:
            raise ValueError(f"transport feedback reports {len(arrivals)} packets, max 65535")
        if not -0x800000 <= self.reference_time <= 0x7FFFFF:
            raise ValueError(f"reference time {self.reference_time} does not fit 24 signed bits")
        if not 0 <= self.feedback_count <= 0xFF:
            raise ValueError(f"feedback count {self.feedback_count} does not fit 8 bits")

        statuses: list[int] = []
        deltas = bytearray()
        prev = 0
        for i, (seq, arrival) in enumerate(arrivals):
            if seq != seq_add(self.base_sequence, i):
                raise ValueError(f"arrival {i} has sequence {seq}, expected base + {i}")
            if arrival is None:
                statuses.append(NOT_RECEIVED)
                continue
            ticks = (arrival + _DELTA_US // 2) // _DELTA_US
            delta = ticks - prev
            prev = ticks
            if 0 <= delta <= 0xFF:
                statuses.append(SMALL_DELTA)
                deltas.append(delta)
            elif -0x8000 <= delta <= 0x7FFF:
                statuses.append(LARGE_DELTA)
                deltas += delta.to_bytes(2, "big", signed=True)
            else:
                raise ValueError(f"arrival delta of packet {i} ({delta * 250} us) does not fit")

        body = _encode_chunks(statuses) + deltas
        total = _HEADER_SIZE + len(body)
        padding = -total % 4
        first = 0x80 | TRANSPORT_CC_FMT
        if padding:
            first |= 0x20
            body += bytes(padding - 1) + bytes((padding,))
        header = _HEADER.pack(
            first,
            RTCP_RTPFB,
            (total + padding) // 4 - 1,
            self.sender_ssrc,
            self.media_ssrc,
            self.base_sequence,
            len(arrivals),
            ((self.reference_time & 0xFFFFFF) << 8) | self.feedback_count,
        )
        return header + bytes(body)


def _parse_chunks(data: bytes, pos: int, end: int, count: int) -> tuple[list[int], int]:
    """Statuses of the ``count`` packets, and the offset of the first delta."""
    statuses: list[int] = []
    while len(statuses) < count:
        if pos + 2 > end:
            raise ValueError(
                f"transport feedback is truncated: {len(statuses)} of {count} statuses in chunks"
            )
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        wanted = count - len(statuses)
        if not chunk & 0x8000:
            symbol = (chunk >> 13) & 3
            if symbol == 3:
                raise ValueError("transport feedback run-length chunk has reserved status 3")
            statuses.extend([symbol] * min(chunk & _MAX_RUN, wanted))
        elif not chunk & 0x4000:
            for shift in range(13, 13 - min(14, wanted), -1):
                statuses.append((chunk >> shift) & 1)
        else:
            for shift in range(12, 12 - 2 * min(7, wanted), -2):
                symbol = (chunk >> shift) & 3
                if symbol == 3:
                    raise ValueError("transport feedback status vector has reserved status 3")
                statuses.append(symbol)
    return statuses, pos


def _encode_chunks(statuses: list[int]) -> bytearray:
    """Greedy choice: a run when it covers at least as many packets as a vector would, else the
    densest vector that can hold the statuses ahead (1-bit unless a large delta is among them)."""
    out = bytearray()
    i = 0
    n = len(statuses)
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and run < _MAX_RUN and statuses[i + run] == symbol:
            run += 1
        ahead = statuses[i : i + 14]
        large_ahead = LARGE_DELTA in ahead
        if run >= 14 or i + run == n or (large_ahead and run >= 7):
            chunk = (symbol << 13) | run
            i += run
        elif not large_ahead:
            chunk = 0x8000
            for k, s in enumerate(ahead):
                chunk |= s << (13 - k)
            i += len(ahead)
        else:
            chunk = 0xC000
            for k, s in enumerate(ahead[:7]):
                chunk |= s << (12 - 2 * k)
            i += min(7, n - i)
        out += chunk.to_bytes(2, "big")
    return out


class TransportSequencer:
    """Sender side, one per subscriber connection: stamps packets and remembers what it sent.

    A ring of ``size`` entries indexed by an unwrapped counter keeps (send time, size, probe
    cluster) for ``lookup``; a window pointer into the same ring keeps the bytes sent recently as a
    running sum, so ``sent_bps`` is O(1) amortised for a steady window.
    """

    __slots__ = (
        "_seq",
        "_ext",
        "_first_ext",
        "_mask",
        "_capacity",
        "_times",
        "_sizes",
        "_clusters",
        "_tail",
        "_window_bytes",
        "_cluster_sent",
        "active_cluster",
        "_closed",
    )

    def __init__(self, size: int = 8192, first_seq: int = 0) -> None:
        if size <= 0 or size & (size - 1) or size > 0x8000:
            raise ValueError(f"ring size must be a power of two up to 32768, got {size}")
        self._seq = seq_add(first_seq, 0)
        # Unwrapped counter; starting it at first_seq keeps ring slots aligned with seq numbers,
        # which makes debugging dumps readable.
        self._ext = self._seq
        self._first_ext = self._ext
        self._mask = size - 1
        self._capacity = size
        # Typed arrays, not lists: a list of 8,192 send times and sizes ends up holding as many
        # float and int objects (~430 KB per subscriber once the ring has wrapped); these hold
        # 8 bytes per entry and no objects.
        self._times = array("d", bytes(8 * size))
        self._sizes = array("q", bytes(8 * size))
        self._clusters = array("q", [-1]) * size
        self._tail = self._ext  # oldest packet counted in _window_bytes
        self._window_bytes = 0
        self._cluster_sent: dict[int, int] = {}
        # While a probe runs, media packets belong to it too (as in libwebrtc): the probe then
        # measures everything sent, not just the padding's share of the link.
        self.active_cluster = -1
        self._closed: list[int] = []

    def open_cluster(self, cluster: int) -> None:
        self.active_cluster = cluster

    def close_cluster(self, cluster: int) -> None:
        """The probe is over: its result may be judged once feedback covers it."""
        if self.active_cluster == cluster:
            self.active_cluster = -1
        self._closed.append(cluster)
        del self._closed[:-64]

    def is_closed(self, cluster: int) -> bool:
        return cluster in self._closed

    def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int:
        """The transport sequence number for the next outgoing packet; records it."""
        if probe_cluster < 0:
            probe_cluster = self.active_cluster
        ext = self._ext
        slot = ext & self._mask
        if ext - self._tail >= self._capacity:
            # The slot about to be reused is still counted in the window sum.
            self._window_bytes -= self._sizes[slot]
            self._tail += 1
        self._times[slot] = now_s
        self._sizes[slot] = size
        self._clusters[slot] = probe_cluster
        self._window_bytes += size
        self._ext = ext + 1
        seq = self._seq
        self._seq = seq_add(seq, 1)
        if probe_cluster >= 0:
            sent = self._cluster_sent
            if probe_cluster not in sent and len(sent) >= 64:
                del sent[next(iter(sent))]  # forget the oldest cluster
            sent[probe_cluster] = sent.get(probe_cluster, 0) + 1
        return seq

    def extended(self, seq: int) -> int | None:
        """The unwrapped counter of ``seq`` if that packet is still in the ring, else None."""
        last = self._ext - 1
        back = seq_diff(seq_add(self._seq, -1), seq)
        if back < 0 or back >= self._capacity or last - back < self._first_ext:
            return None
        return last - back

    def lookup(self, seq: int) -> tuple[float, int, int] | None:
        """(send time, size, probe cluster) of ``seq`` if still in the ring."""
        ext = self.extended(seq)
        if ext is None:
            return None
        slot = ext & self._mask
        return self._times[slot], self._sizes[slot], self._clusters[slot]

    def record(self, ext: int) -> tuple[float, int, int]:
        """(send time, size, probe cluster) for a counter returned by ``extended``."""
        slot = ext & self._mask
        return self._times[slot], self._sizes[slot], self._clusters[slot]

    @property
    def capacity(self) -> int:
        """How many recent packets the ring remembers."""
        return self._capacity

    def cluster_sent(self, cluster: int) -> int:
        """How many packets were sent in probe cluster ``cluster`` (0 if unknown)."""
        return self._cluster_sent.get(cluster, 0)

    def sent_bps(self, now_s: float, window_s: float = 0.5) -> float:
        """Bits per second sent in (now_s - window_s, now_s]; assumes send times never go back."""
        if window_s <= 0:
            raise ValueError(f"window must be positive, got {window_s}")
        cutoff = now_s - window_s
        times = self._times
        sizes = self._sizes
        mask = self._mask
        end = self._ext
        oldest = max(self._first_ext, end - self._capacity)
        tail = self._tail
        total = self._window_bytes
        # A wider window than last time: take back packets the pointer had already passed.
        while tail > oldest and times[(tail - 1) & mask] > cutoff:
            tail -= 1
            total += sizes[tail & mask]
        while tail < end and times[tail & mask] <= cutoff:
            total -= sizes[tail & mask]
            tail += 1
        self._tail = tail
        self._window_bytes = total
        return total * 8 / window_s


class FeedbackRecorder:
    """Receiver side, one per publisher connection: arrival times in, feedback packets out.

    Arrivals go into a ring indexed by the unwrapped sequence number. ``build`` reports from the
    first packet not yet reported up to the highest received one. A packet that arrives after its
    range was reported (reordering) moves the start back, so the next feedback reports it again,
    received this time, as libwebrtc does; the sender must accept a packet reported twice.
    """

    MAX_PACKETS = 500  # worst case 20 + 72 chunks * 2 + 500 large deltas * 2 = 1164 bytes

    __slots__ = (
        "_mask",
        "_capacity",
        "_stamps",
        "_arrivals",
        "_highest",
        "_highest_seq",
        "_start",
        "_fb_count",
        "_last_ref",
    )

    def __init__(self, size: int = 4096) -> None:
        if size <= 0 or size & (size - 1) or size > 0x8000:
            raise ValueError(f"ring size must be a power of two up to 32768, got {size}")
        self._mask = size - 1
        self._capacity = size
        # Typed arrays, as TransportSequencer's: no int and float object per filled slot.
        self._stamps = array("q", [-1]) * size  # which unwrapped seq the slot holds
        self._arrivals = array("d", bytes(8 * size))
        self._highest = -1  # unwrapped; -1 until the first packet
        self._highest_seq = 0
        self._start = 0  # first unwrapped seq not yet reported
        self._fb_count = 0
        self._last_ref = 0

    def on_packet(self, seq: int, arrival_s: float) -> None:
        """Record one received packet carrying the transport-wide sequence number ``seq``."""
        highest = self._highest
        if highest < 0:
            # Start the unwrapped counter high enough that old packets never go negative.
            ext = self._start = self._highest = 0x10000 + seq
            self._highest_seq = seq
        else:
            ext = highest + seq_diff(seq, self._highest_seq)
            if ext > highest:
                if ext - highest >= self._capacity:
                    self._start = ext  # a jump (sender restart): the gap is not worth reporting
                self._highest = ext
                self._highest_seq = seq
            elif highest - ext >= self._capacity:
                return  # too old to report
            elif self._stamps[ext & self._mask] == ext:
                return  # duplicate: keep the first arrival
            if ext < self._start and highest - ext < self.MAX_PACKETS:
                # A late arrival of a packet already reported lost: report it again. Later than
                # that it is worthless to the sender's estimator and not worth a big feedback.
                self._start = ext
        slot = ext & self._mask
        self._stamps[slot] = ext
        self._arrivals[slot] = arrival_s

    def build(self, now_s: float, sender_ssrc: int, media_ssrc: int) -> bytes | None:
        """The next feedback packet, or None if nothing arrived since the last one.

        One packet holds at most MAX_PACKETS statuses, and a gap between arrivals too long for a
        delta (8 s) ends it early; call again until None to drain (``now_s`` is accepted so that
        the call stays time-explicit like the rest of the module; no decision depends on it yet).
        """
        highest = self._highest
        if highest < 0 or self._start > highest:
            return None
        start = max(self._start, highest - self._capacity + 1)
        end = min(highest, start + self.MAX_PACKETS - 1)
        stamps = self._stamps
        times = self._arrivals
        mask = self._mask
        base_seq = seq_add(self._highest_seq, start - highest)
        arrivals: list[tuple[int, int | None]] = []
        ref: int | None = None
        prev = 0
        for ext in range(start, end + 1):
            slot = ext & mask
            seq = seq_add(base_seq, ext - start)
            if stamps[slot] != ext:
                arrivals.append((seq, None))
                continue
            ticks = round(times[slot] * 4000)  # 250 us ticks
            if ref is None:
                ref = ticks // _TICKS_PER_REF
                prev = ref * _TICKS_PER_REF
            if not -0x8000 <= ticks - prev <= 0x7FFF:
                end = ext - 1  # report the rest in the next packet
                break
            prev = ticks
            arrivals.append((seq, (ticks - ref * _TICKS_PER_REF) * _DELTA_US))
        if ref is None:
            ref = self._last_ref  # nothing received in this range: any reference will do
        self._last_ref = ref
        self._start = end + 1
        feedback = TransportFeedback(
            sender_ssrc=sender_ssrc,
            media_ssrc=media_ssrc,
            base_sequence=base_seq,
            reference_time=ref24_diff(ref, 0),
            feedback_count=self._fb_count,
            arrivals=arrivals,
        )
        self._fb_count = (self._fb_count + 1) & 0xFF
        return bytes(feedback)
