"""The load generator's cheap receiver answers like a browser: NACK, RTX repair, PLI, RR.

Real SRTP (pylibsrtp sessions with one key), real RTP and RTCP bytes; no sockets.
"""

from __future__ import annotations

import time

import pylibsrtp
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from loadtest import receiver as rx_module
from loadtest.receiver import PLAIN, CheapReceiver, Marker
from loadtest.simulcast import vp8_payloads
from sfu.wire.rtp_packet import pack_header

VIDEO_SSRC, RTX_SSRC, AUDIO_SSRC = 1111, 2222, 3333
VP8_PT, RTX_PT, OPUS_PT = 96, 97, 111
SECTIONS = [
    ["m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:0", "a=rtpmap:96 VP8/90000",
     "a=rtpmap:97 rtx/90000", f"a=ssrc-group:FID {VIDEO_SSRC} {RTX_SSRC}",
     f"a=ssrc:{VIDEO_SSRC} cname:x", f"a=ssrc:{RTX_SSRC} cname:x"],
    ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:1", "a=rtpmap:111 opus/48000/2",
     f"a=ssrc:{AUDIO_SSRC} cname:x"],
]
TRACKS = {"0": {"participant_id": "p1", "kind": "video"},
          "1": {"participant_id": "p1", "kind": "audio"}}
KEY_Q, DELTA_Q, DELTA_H = b"K" * 16, b"q" * 16, b"h" * 16
MARKERS: dict[bytes, Marker] = {KEY_Q: ("q", 0, True), DELTA_Q: ("q", 1, False),
                                DELTA_H: ("h", 7, False)}


class Link:
    """One SRTP key both ways, and what the receiver sent back."""

    def __init__(self) -> None:
        key = bytes(range(30))
        self.tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        self.sent: list[bytes] = []
        self.receiver = CheapReceiver(MARKERS, self._send, rtcp_ssrc=42)
        self.receiver.learn(SECTIONS, TRACKS)

    def _send(self, packet: bytes) -> bool:
        self.sent.append(packet)
        return True

    def rtp(self, seq: int, ts: int, payload: bytes, ssrc: int = VIDEO_SSRC,
            pt: int = VP8_PT) -> None:
        self.receiver.on_srtp(self.tx.protect(pack_header(0x80, pt, seq, ts, ssrc) + payload),
                              self.rx)

    def frame(self, seq: int, ts: int, marker: bytes) -> None:
        self.rtp(seq, ts, vp8_payloads(marker + bytes(100), 1)[0])

    def feedback(self) -> list[object]:
        out = [p for data in self.sent for p in RtcpPacket.parse(data)]
        self.sent.clear()
        return out


def nacked(packets: list[object]) -> list[int]:
    return [seq for p in packets if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK
            for seq in p.lost]


def plis(packets: list[object]) -> list[int]:
    return [p.media_ssrc for p in packets
            if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI]


def test_a_gap_is_nacked_at_once_and_rtx_repairs_it_without_a_pli() -> None:
    link = Link()
    link.frame(65534, 1000, KEY_Q)
    link.rtp(65535, 1000, b"\x00" * 50)
    link.rtp(2, 1000, b"\x00" * 50)  # 0 and 1 are missing, across the wrap
    assert nacked(link.feedback()) == [0, 1]
    track = link.receiver.tracks_by_ssrc[VIDEO_SSRC]
    assert track.highest == 65536 + 2 and set(track.missing) == {65536, 65537}
    for seq in (0, 1):  # the server's answer: RTX, the original sequence number first
        link.rtp(500 + seq, 1000, seq.to_bytes(2, "big") + b"\x00" * 50, RTX_SSRC, RTX_PT)
    assert track.repaired == 2 and not track.missing
    link.receiver.tick(time.monotonic() + 5)
    assert plis(link.feedback()) == []


def test_a_loss_nothing_repairs_is_retried_then_asks_for_a_keyframe() -> None:
    link = Link()
    link.frame(10, 1000, KEY_Q)
    link.rtp(13, 1000, b"\x00" * 50)
    assert nacked(link.feedback()) == [11, 12]
    start = time.monotonic()
    link.receiver.tick(start + rx_module.NACK_RETRY_S + 0.01)
    assert nacked(link.feedback()) == [11, 12]  # the second try
    link.receiver.tick(start + rx_module.GIVE_UP_S + 0.1)
    assert plis(link.feedback()) == [VIDEO_SSRC]
    track = link.receiver.tracks_by_ssrc[VIDEO_SSRC]
    assert track.unrepaired == 2 and track.plis == 1 and not track.missing


def test_audio_loss_is_counted_but_never_nacked() -> None:
    link = Link()
    link.rtp(1, 960, b"\x01" * 40, AUDIO_SSRC, OPUS_PT)
    link.rtp(5, 960 * 5, b"\x01" * 40, AUDIO_SSRC, OPUS_PT)
    assert nacked(link.feedback()) == []
    track = link.receiver.tracks_by_ssrc[AUDIO_SSRC]
    assert track.expected() == 5 and track.received == 2


def test_a_layer_switch_on_a_delta_frame_is_flagged_and_asks_for_a_keyframe() -> None:
    link = Link()
    link.frame(1, 3000, KEY_Q)
    link.frame(2, 6000, DELTA_Q)
    assert plis(link.feedback()) == []
    link.frame(3, 9000, DELTA_H)  # h without a keyframe: a decoder could not show it
    track = link.receiver.tracks_by_ssrc[VIDEO_SSRC]
    assert track.layer == "h" and track.layer_switches == 1 and track.switches_off_keyframe == 1
    assert plis(link.feedback()) == [VIDEO_SSRC]
    assert dict(track.frames_by_layer) == {"q": 2, "h": 1} and track.marker_ok == 3


def test_a_new_stream_starting_on_a_delta_frame_asks_for_a_keyframe_once_a_second() -> None:
    link = Link()
    link.frame(1, 3000, DELTA_Q)
    link.frame(2, 6000, DELTA_H)
    link.frame(3, 9000, DELTA_Q)
    assert plis(link.feedback()) == [VIDEO_SSRC]  # rate-limited: one


def test_receiver_reports_say_what_was_lost_and_when_the_last_sr_came() -> None:
    link = Link()
    sr = RtcpSrPacket(ssrc=VIDEO_SSRC, sender_info=RtcpSenderInfo(
        ntp_timestamp=0x1234567890ABCDEF, rtp_timestamp=0, packet_count=1, octet_count=1))
    link.frame(100, 1000, KEY_Q)
    link.receiver.on_rtcp(bytes(sr))
    for seq in range(101, 110):  # 9 of 10 more arrive
        if seq != 105:
            link.rtp(seq, 1000, b"\x00" * 50)
    link.feedback()
    link.receiver.send_receiver_reports(time.monotonic() + 0.5)
    reports = [r for p in link.feedback() if isinstance(p, RtcpRrPacket) for r in p.reports]
    video = next(r for r in reports if r.ssrc == VIDEO_SSRC)
    assert video.packets_lost == 1 and video.highest_sequence == 109
    assert video.fraction_lost == (1 << 8) // 10
    assert video.lsr == 0x567890AB and 30000 < video.dlsr < 36000  # ~0.5 s in 1/65536 s


def test_a_late_packet_is_not_taken_for_the_start_of_a_frame() -> None:
    link = Link()
    link.frame(1, 3000, KEY_Q)
    track = link.receiver.tracks_by_ssrc[VIDEO_SSRC]
    track.sr = (time.time(), 0)  # a clock mapping: every frame start gives a delay sample
    link.rtp(3, 3000, b"\x00" * 50)
    link.frame(4, 6000, DELTA_Q)
    link.rtp(2, 3000, b"\x00" * 50)  # late, of the first frame
    link.rtp(5, 6000, b"\x00" * 50)
    assert sum(link.receiver.delay_ms.values()) == 1  # frame 4's start only
    assert track.marker_ok == 2 and track.marker_bad == 0 and track.last_ts == 6000
    assert not track.missing and track.received == 5


def test_packets_aiortc_already_decrypted_are_measured_too() -> None:
    link = Link()
    payload = vp8_payloads(KEY_Q + bytes(100), 1)[0]
    link.receiver.on_srtp(pack_header(0x80, VP8_PT, 1, 3000, VIDEO_SSRC) + payload, PLAIN)
    assert link.receiver.tracks_by_ssrc[VIDEO_SSRC].marker_ok == 1


def test_garbage_is_counted_not_raised() -> None:
    link = Link()
    link.receiver.on_srtp(b"\x80\x60" + bytes(10), link.rx)  # unknown SSRC 0
    link.receiver.on_srtp(b"\x80", link.rx)  # too short: caught
    link.receiver.on_rtcp(b"\x80\xc8\x00\x01")  # truncated SR
    assert link.receiver.unknown_packets == 2


# -- the publisher's side: NACKs answered with RTX -----------------------------------------------


def test_the_publisher_answers_a_nack_with_rtx_tagged_with_the_repaired_rid() -> None:
    from loadtest.retransmit import LayerHistory
    from sfu.wire.rtp_packet import RtpView

    history = LayerHistory("h")
    for seq in range(65530, 65536):
        history.put(seq, 9000, 0x80 if seq == 65535 else 0, bytes([seq & 0xFF]) * 20)
    history.put(0, 12000, 0, b"\x00" * 20)
    packets = history.rtx_packets([65535, 0, 7], 97, [(1, b"0"), (11, b"h")], 10.0)
    assert len(packets) == 2 and history.retransmitted == 2 and history.missed == 1
    first = RtpView.parse(packets[0])
    assert first.payload_type == 97 and first.ssrc == history.rtx_ssrc and first.marker
    assert first.extensions == {1: b"0", 11: b"h"}  # MID and repaired-RID, never a RID
    assert first.payload[:2] == (65535).to_bytes(2, "big") and first.timestamp == 9000
    second = RtpView.parse(packets[1])
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    # the SFU lists them again in its next NACK: not resent within a round trip, then again
    assert history.rtx_packets([65535, 0], 97, [], 10.05) == []
    assert len(history.rtx_packets([65535, 0], 97, [], 10.2)) == 2


def test_rtx_payload_type_is_the_one_whose_apt_is_the_codec() -> None:
    from loadtest.retransmit import rtx_payload_type

    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99\r\na=mid:0\r\n"
           "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=98\r\n"
           "a=rtpmap:98 H264/90000\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=96\r\n")
    assert rtx_payload_type(sdp, "0", 96) == 99
    assert rtx_payload_type(sdp, "0", 100) is None and rtx_payload_type(sdp, "1", 96) is None


def test_a_switched_slot_counts_for_its_new_participant_from_the_next_packet() -> None:
    link = Link()
    link.frame(1, 3000, KEY_Q)
    link.frame(2, 6000, DELTA_Q)
    assert link.receiver.tracks_by_ssrc[VIDEO_SSRC].participant == "p1"
    link.receiver.follow_slot("0", "p2")  # the server's `slot`: mid 0 shows p2 now
    assert link.receiver.tracks["0"]["participant_id"] == "p2"
    assert link.receiver.tracks["1"]["participant_id"] == "p1"  # audio untouched
    link.frame(3, 9000, KEY_Q)  # the same stream continues (same SSRC, next number)
    track = link.receiver.tracks_by_ssrc[VIDEO_SSRC]
    assert track.participant == "p2" and track.received == 1
    assert not nacked(link.feedback())


def test_an_offer_naming_another_participant_for_an_mline_starts_a_new_count() -> None:
    link = Link()
    link.frame(1, 3000, KEY_Q)
    # The server switched the slot and named the new owner in its next offer (no `slot` seen)
    link.receiver.learn(SECTIONS, {"0": {"participant_id": "p3", "kind": "video"},
                                   "1": {"participant_id": "p1", "kind": "audio"}})
    link.frame(2, 6000, KEY_Q)
    assert link.receiver.tracks_by_ssrc[VIDEO_SSRC].participant == "p3"
    link.rtp(1, 960, b"\x00" * 20, ssrc=AUDIO_SSRC, pt=OPUS_PT)
    link.receiver.learn(SECTIONS, {"0": {"participant_id": "p3", "kind": "video"},
                                   "1": {"participant_id": "p1", "kind": "audio"}})
    assert link.receiver.tracks_by_ssrc[VIDEO_SSRC].received == 1  # same owner: kept
    assert link.receiver.tracks_by_ssrc[AUDIO_SSRC].participant == "p1"
