"""Per-consumer rewriting of RTP sequence numbers and timestamps.

A subscriber sees one continuous RTP stream per m-line, whatever the SFU forwards into it
(several publishers over time on a reused m-line, simulcast layer switches, packets dropped
because they carry only padding). These classes map input numbers to output numbers so that
the output has no jumps in sequence numbers (a jump reads as loss and triggers NACKs) and its
timestamps keep moving forward (a jump back confuses jitter buffers and A/V sync).

This is what LiveKit calls the RTP munger and mediasoup the SeqManager. Pure logic: time is
passed in; all wraparound maths come from sfu.wire.seqmath.
"""

from sfu.wire.seqmath import seq_add, seq_diff, ts_add, ts_diff

__all__ = ["SequenceRewriter", "TimestampRewriter"]

# At most this many runs of consecutive dropped packets are remembered; a reordered packet older
# than the oldest remembered run can no longer be numbered and is discarded. Padding comes in
# consecutive bursts, so one run usually covers a whole burst.
MAX_DROP_RUNS = 64


class SequenceRewriter:
    """Maps input sequence numbers to a contiguous output sequence.

    Internally input numbers are unwrapped to "extended" ints (`_highest`, `_floor`, the drop
    runs) so that comparisons after the sync point never alias, however long the stream runs.
    An input packet with extended number e is output as `e + _offset - (drops after it)`,
    where `_offset` already counts every drop so far; only reordered packets pay for looking up
    the drops that happened after them.
    """

    __slots__ = ("_floor", "_highest", "_offset", "_runs", "last_output")

    def __init__(self, first_output: int) -> None:
        # Output of the newest packet sent; starting one before first_output makes the first
        # sync a special case of "continue after last_output".
        self.last_output: int = seq_add(first_output, -1)
        self._highest: int | None = None  # newest input (extended), sent or dropped
        self._offset = 0
        self._floor = 0  # oldest input (extended) that can still be numbered
        # Runs of dropped inputs, oldest first: [first_ext, last_ext, offset before the run].
        self._runs: list[list[int]] = []

    def sync(self, in_seq: int) -> None:
        """Start a new source: the packet `in_seq` will be output as last_output + 1.

        From then on `input` must only see packets of the new source: a late packet of the old
        one cannot be told apart by its number (it may look newer), so the caller filters by
        source before calling `input`.
        """
        self._highest = in_seq - 1
        self._floor = in_seq
        self._offset = self.last_output + 1 - in_seq
        self._runs.clear()

    def input(self, in_seq: int) -> int | None:
        """Output sequence number for `in_seq`, or None if it must not be sent."""
        highest = self._highest
        if highest is None:
            self.sync(in_seq)  # no explicit sync: the first packet starts the stream
            highest = self._highest
            assert highest is not None
        d = seq_diff(in_seq, highest)
        if d > 0:  # common case: the newest packet so far
            highest += d
            self._highest = highest
            out = seq_add(highest, self._offset)
            self.last_output = out
            return out
        return self._input_old(highest + d)

    def _input_old(self, ext: int) -> int | None:
        # Reordered, duplicated or late packet: it is numbered with the offset that held
        # before every drop that came after it.
        if ext < self._floor:
            return None
        offset = self._offset
        runs = self._runs
        for k in range(len(runs) - 1, -1, -1):
            first, last, before = runs[k]
            if ext > last:
                break
            if ext >= first:
                return None  # this very packet was dropped (a duplicate of it arrives)
            offset = before
        return seq_add(ext, offset)

    def drop(self, in_seq: int) -> None:
        """The packet `in_seq` will not be forwarded: later packets shift down to fill its slot.

        Only a drop of the newest packet can shift anything: packets after an older one may
        already be out with their numbers, so a late drop is ignored and leaves a one-packet
        gap in the output (as mediasoup does); the receiver's NACK for it goes unanswered.
        """
        highest = self._highest
        if highest is None:
            self.sync(in_seq)
            highest = self._highest
            assert highest is not None
        d = seq_diff(in_seq, highest)
        if d <= 0:
            return
        ext = highest + d
        runs = self._runs
        if d == 1 and runs and runs[-1][1] == highest:
            runs[-1][1] = ext  # extends the current run of consecutive drops
        else:
            runs.append([ext, ext, self._offset])
            if len(runs) > MAX_DROP_RUNS:
                # Packets older than the forgotten run would need its offset: refuse them.
                self._floor = runs.pop(0)[1] + 1
        self._offset -= 1
        self._highest = ext


class TimestampRewriter:
    """Maps input RTP timestamps to an output timeline that keeps moving forward.

    `offset` (None before the first sync) is such that in_ts + offset = out_ts modulo 2**32; the
    caller applies it to the publisher's RTCP sender report RTP timestamp too, so the
    subscriber's lip sync stays right.
    """

    __slots__ = ("_last_time", "clock_rate", "first_output", "last_output", "offset")

    def __init__(self, clock_rate: int, first_output: int) -> None:
        self.clock_rate = clock_rate
        self.first_output = first_output & 0xFFFFFFFF
        self.offset: int | None = None
        self.last_output: int = self.first_output  # newest output timestamp
        self._last_time: float | None = None  # when last_output was sent (None: nothing sent)

    def sync(self, in_ts: int, now_s: float) -> None:
        """Start a new source whose packet with `in_ts` is about to be sent at `now_s`."""
        if self._last_time is None:
            target = self.first_output
        else:
            # Advance by the real time that passed, so receivers see neither a jump back nor a
            # stall; at least one tick, as two frames must not share a timestamp.
            ticks = int((now_s - self._last_time) * self.clock_rate)
            if ticks < 1:
                ticks = 1
            elif ticks > 0x7FFFFFFF:
                ticks = 0x7FFFFFFF  # beyond half the space receivers would read a jump back
            target = ts_add(self.last_output, ticks)
        self.offset = ts_add(target, -in_ts)

    def input(self, in_ts: int, now_s: float) -> int:
        """Output timestamp for `in_ts`, sent at `now_s`."""
        offset = self.offset
        if offset is None:
            self.sync(in_ts, now_s)  # no explicit sync: the first packet starts the stream
            offset = self.offset
            assert offset is not None
        out = ts_add(in_ts, offset)
        # Packets of one frame share a timestamp: still record the time, so that a switch
        # measures elapsed time from the last packet actually sent.
        if out == self.last_output or ts_diff(out, self.last_output) > 0:
            self.last_output = out
            self._last_time = now_s
        elif self._last_time is None:
            # First packet after the first sync is older than the sync point (reordering).
            self._last_time = now_s
        return out
