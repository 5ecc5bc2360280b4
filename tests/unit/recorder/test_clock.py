"""The common clock: unwrapping, SR mapping, per-publisher offsets, monotonic file timestamps."""

from __future__ import annotations

import pytest

from recorder.clock import (
    NTP_EPOCH_OFFSET,
    SenderClock,
    TimestampUnwrapper,
    TrackClock,
    TrackTimeline,
    ntp_to_seconds,
)


def test_ntp_to_seconds() -> None:
    ntp = ((NTP_EPOCH_OFFSET + 1_700_000_000) << 32) | (1 << 31)
    assert ntp_to_seconds(ntp) == pytest.approx(1_700_000_000.5)


def test_unwrapper_crosses_the_32_bit_wrap_both_ways() -> None:
    unwrap = TimestampUnwrapper()
    start = 2**32 - 6000
    assert unwrap.unwrap(start) == start
    assert unwrap.unwrap(start + 3000) == start + 3000
    assert unwrap.unwrap((start + 9000) & 0xFFFFFFFF) == start + 9000  # wrapped
    assert unwrap.unwrap((start + 6000) & 0xFFFFFFFF) == start + 6000  # late, past the wrap
    assert unwrap.unwrap(start) == start  # reordered from before the wrap


def test_sr_maps_rtp_to_the_common_clock_across_a_wrap() -> None:
    sender = SenderClock()
    clock = TrackClock(90000, sender)
    sender_epoch = 1000.0  # the publisher's clock runs 5000 s behind the server's
    rtp0 = 2**32 - 45000  # half a second before the wrap
    clock.on_sender_report(7, sender_epoch, rtp0, arrival_s=6000.02)
    # a frame 1 s after the report, past the wrap
    at = clock.common_time(7, (rtp0 + 90000) & 0xFFFFFFFF, arrival_s=6001.05)
    assert at == pytest.approx(6001.02)


def test_offset_is_the_least_delayed_report_and_shared_by_audio_and_video() -> None:
    sender = SenderClock()
    video, audio = TrackClock(90000, sender), TrackClock(48000, sender)
    video.on_sender_report(1, 100.0, 0, arrival_s=5100.030)  # 30 ms queued
    audio.on_sender_report(2, 100.5, 0, arrival_s=5100.510)  # 10 ms: the better estimate
    assert video.common_time(1, 90000, 5101.02) == pytest.approx(5101.010)
    assert audio.common_time(2, 48000, 5101.52) == pytest.approx(5101.510)


def test_before_any_sr_the_first_arrival_anchors_the_ssrc() -> None:
    clock = TrackClock(48000, SenderClock())
    assert clock.common_time(3, 1000, arrival_s=50.0) == 50.0
    assert clock.common_time(3, 1000 + 960, arrival_s=50.5) == pytest.approx(50.02)
    clock.on_sender_report(3, 10.0, 1000 + 960, arrival_s=50.04)
    assert clock.common_time(3, 1000 + 1920, arrival_s=50.6) == pytest.approx(50.06)


def test_two_publishers_with_different_clocks_line_up_on_the_common_clock() -> None:
    """Alice's and Bob's frames captured at the same server instant map to the same time even
    though their RTP origins and NTP clocks differ wildly (the 40 ms alignment goal)."""
    alice, bob = TrackClock(90000, SenderClock()), TrackClock(90000, SenderClock())
    alice.on_sender_report(1, 3_900_000_000.0, 12345, arrival_s=1000.015)
    bob.on_sender_report(2, 17.25, 4_000_000_000, arrival_s=1000.020)
    a = alice.common_time(1, 12345 + 90000 * 3, 1003.02)
    b = bob.common_time(2, (4_000_000_000 + 90000 * 3) & 0xFFFFFFFF, 1003.03)
    assert abs(a - 1003.015) < 1e-6 and abs(b - 1003.020) < 1e-6
    assert abs(a - b) < 0.040


def test_timeline_starts_at_zero_keeps_gaps_and_never_goes_back() -> None:
    line = TrackTimeline(90000)
    assert line.pts(100.0) == 0
    assert line.pts(100.5) == 45000
    assert line.pts(103.5) == 315000  # a 3 s gap stays a gap
    assert line.pts(103.49) == 315001  # the mapping moved back: clamped
    assert line.clamped == 1
    assert line.start_s == 100.0


def test_sender_clock_without_reports_refuses() -> None:
    with pytest.raises(ValueError, match="no sender report"):
        SenderClock().to_common(1.0)


def test_forged_sr_or_timestamp_jump_cannot_move_frames_far_from_their_arrival() -> None:
    clock = TrackClock(90000, SenderClock())
    clock.on_sender_report(1, 100.0, 0, arrival_s=1000.0)
    assert clock.common_time(1, 90000, 1001.0) == pytest.approx(1001.0)
    # a timestamp 6 hours ahead (or a lying SR) would open a 6 h gap in the file
    assert clock.common_time(1, 90000 * 3600 * 6, 1001.1) == 1001.1
    assert clock.implausible == 1
    # before any SR: a jump re-anchors on arrival
    other = TrackClock(48000, SenderClock())
    assert other.common_time(2, 0, 50.0) == 50.0
    assert other.common_time(2, 48000 * 3600, 50.02) == 50.02
    assert other.common_time(2, 48000 * 3600 + 960, 50.04) == pytest.approx(50.04)
    assert other.implausible == 1


def test_a_late_seen_sr_is_corrected_by_the_frames_arrivals() -> None:
    """The media plane hands SRs over at its next tick (up to 0.5 s late); the frames' own
    arrivals bring the offset back to the path delay (measured 277 ms off before)."""
    sender = SenderClock()
    clock = TrackClock(90000, sender)
    clock.on_sender_report(1, 100.0, 0, arrival_s=5100.4)  # really arrived at 5100.01
    first = clock.common_time(1, 3000, arrival_s=5100.043)  # sent at 100.0333, 10 ms path
    assert first == pytest.approx(5100.043)  # not 5100.4333: its own arrival bounds it
    # the next frame, 3 ms more queued: the path delay of the least queued one (9.7 ms)
    assert clock.common_time(1, 6000, arrival_s=5100.08) == pytest.approx(5100.0764, abs=1e-4)
    # a forged, far-off frame time neither moves the offset nor its neighbours
    assert clock.common_time(1, 90000 * 3600, arrival_s=5100.1) == 5100.1
    assert clock.common_time(1, 9000, arrival_s=5100.11) == pytest.approx(5100.1097, abs=1e-4)


def test_a_sender_report_stamped_late_by_a_stalled_sender_does_not_shift_the_track() -> None:
    """aiortc stamps an SR's NTP when it has sent the last packet of a frame, not when the frame
    was captured: a stall of the sending process (a busy machine) makes one SR say its RTP
    timestamp happened up to ~290 ms later than the others do (measured in
    tests/integration/test_recording.py: the SR base ntp - rtp/rate of one SSRC jumped by +101,
    +291, +136 ms and back). That SR must not move the frames, and the offset samples taken while
    it was the newest must not pull the track early for the next 16 s (the recording placed the
    step 150-440 ms early)."""
    sender = SenderClock()
    clock = TrackClock(90000, sender)
    epoch = 3000.0  # sender clock = server clock - 2000 s; path 10 ms
    lags = [0.291, 0.0, 0.102, 0.0, 0.0, 0.136, 0.0, 0.0]  # the first report is the stalled one
    worst = 0.0
    for step in range(8 * 15):  # 15 frames per 0.5 s
        t = step / 30  # capture, sender seconds since the first frame
        if step % 15 == 0:
            lag = lags[step // 15]
            # seen at the next maintenance tick, up to 0.5 s after it was sent
            clock.on_sender_report(1, epoch + t + lag, round(t * 90000), 2000 + epoch + t + 0.4)
        mapped = clock.common_time(1, round(t * 90000), arrival_s=2000 + epoch + t + 0.010)
        if step >= 15:  # once a true report has been seen
            worst = max(worst, abs(mapped - (2000 + epoch + t + 0.010)))
    assert worst < 0.002, f"frames misplaced by up to {worst * 1000:.0f} ms"


def test_a_new_report_far_from_the_others_is_a_restart_and_replaces_them() -> None:
    """The least-delayed report wins only among reports that agree to within a second; a sender
    whose timestamps restart (or jump) is followed at its next report."""
    clock = TrackClock(90000, SenderClock())
    clock.on_sender_report(1, 100.0, 0, arrival_s=1000.01)
    assert clock.common_time(1, 9000, 1000.11) == pytest.approx(1000.11)
    clock.on_sender_report(1, 102.0, 90000 * 500, arrival_s=1002.01)  # timestamps jumped 498 s
    assert clock.common_time(1, 90000 * 500 + 9000, 1002.11) == pytest.approx(1002.11)
    assert clock.implausible == 0
