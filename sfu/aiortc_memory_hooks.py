"""aiortc internals touched only to save memory on the server (issue 11: memory per participant).

Split from ``sfu.aiortc_hooks`` for size; it re-exports every name here, so callers import one
module, and ``tests/unit/test_aiortc_hooks.py`` guards both files.

Every ``RTCRtpTransceiver`` has a receiver, also on the subscriber connection's sendonly
m-lines, where the server only sends: in a room of 50 each subscriber has ~98 of them. A video
``RTCRtpReceiver`` builds, in its constructor, a remote bitrate estimator whose rate counter
holds 1,000 bucket objects (~50 KB), a 512-slot jitter buffer, a NACK generator, and for its
decoder a thread-safe queue and event (~4 KB of locks and deques). The SFU uses none of them on
any receiver: ``hook_transport`` hands every decrypted packet of the connection to the SFU
before a receiver could see it (``Publisher`` keeps its own ``NackGenerator``, the downlink its
own estimator). ``slim_receiver`` drops them for the small stand-ins aiortc itself uses for
audio (no estimator, no NACK generator, a 16-slot buffer). Senders and never-started receivers
also carry asyncio events for their tasks, which ``capture_sender`` keeps from ever starting.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.sdp import MediaDescription, SessionDescription

__all__ = ["MEMORY_PC_ATTRS", "MEMORY_RECEIVER_ATTRS", "MEMORY_SENDER_ATTRS",
           "MEMORY_TRANSCEIVER_ATTRS",
           "slim_descriptions", "slim_receiver", "slim_sender"]

_PREFIX = "_RTCRtpReceiver__"
MEMORY_RECEIVER_ATTRS = tuple(_PREFIX + name for name in (
    "remote_bitrate_estimator", "nack_generator", "jitter_buffer", "decoder_queue",
    "decoder_error", "decoder_thread", "rtcp_started", "rtcp_exited", "started"))
"""Instance attributes of ``RTCRtpReceiver`` replaced here (checked on live objects by the
test)."""
_SENDER_PREFIX = "_RTCRtpSender__"
_SENDER_EVENTS = tuple(_SENDER_PREFIX + name for name in (
    "rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"))
MEMORY_SENDER_ATTRS = (*_SENDER_EVENTS, _SENDER_PREFIX + "started")
"""Instance attributes of ``RTCRtpSender`` replaced or read here (checked by the test)."""

# One asyncio.Event (~0.7 KB with its deque) stands in for the four of every sender whose
# send() is captured and the two of every receiver that never receives: aiortc waits on them
# only in stop() of a started sender or receiver, and these never start.
_NEVER_SET = asyncio.Event()

SLIM_JITTER_CAPACITY = 16
"""What aiortc gives an audio receiver; never filled here (no packet reaches a receiver)."""

# One stand-in decoder queue and error event for every receiver that never decodes: aiortc
# touches them only from ``receive()`` (which starts the decoder thread) and when it stops that
# thread; ``slim_receiver`` is only for receivers whose ``receive()`` never runs.
_NO_DECODER_QUEUE: queue.Queue[object] = queue.Queue()
_NO_DECODER_ERROR = threading.Event()


def slim_receiver(receiver: RTCRtpReceiver, never_receives: bool = False) -> bool:
    """Drop what a receiver the SFU never feeds holds in memory; False (nothing changed) when
    aiortc no longer has these names.

    ``never_receives``: the receiver of a sendonly m-line, whose ``receive()`` aiortc never
    calls; its decoder queue and error event are then shared stand-ins as well.
    """
    if not all(hasattr(receiver, name) for name in MEMORY_RECEIVER_ATTRS):
        return False
    setattr(receiver, _PREFIX + "remote_bitrate_estimator", None)
    setattr(receiver, _PREFIX + "nack_generator", None)
    buffer = getattr(receiver, _PREFIX + "jitter_buffer")
    if buffer is not None and buffer.capacity > SLIM_JITTER_CAPACITY:
        setattr(receiver, _PREFIX + "jitter_buffer", JitterBuffer(SLIM_JITTER_CAPACITY))
    if (never_receives and getattr(receiver, _PREFIX + "decoder_thread") is None
            and not getattr(receiver, _PREFIX + "started")):
        setattr(receiver, _PREFIX + "decoder_queue", _NO_DECODER_QUEUE)
        setattr(receiver, _PREFIX + "decoder_error", _NO_DECODER_ERROR)
        setattr(receiver, _PREFIX + "rtcp_started", _NEVER_SET)
        setattr(receiver, _PREFIX + "rtcp_exited", _NEVER_SET)
    return True


def slim_sender(sender: RTCRtpSender) -> bool:
    """Share the start/exit events of a sender whose ``send()`` was replaced (``capture_sender``):
    it never starts its RTP and RTCP tasks, so nothing sets or awaits them. False (nothing
    changed) for a sender that can still start, or when aiortc no longer has these names."""
    if "send" not in vars(sender) or not all(hasattr(sender, n) for n in MEMORY_SENDER_ATTRS):
        return False
    if getattr(sender, _SENDER_PREFIX + "started"):
        return False
    for name in _SENDER_EVENTS:
        setattr(sender, name, _NEVER_SET)
    return True


_PC_PREFIX = "_RTCPeerConnection__"
_DESCRIPTIONS = tuple(_PC_PREFIX + name for name in (
    "pendingLocalDescription", "currentLocalDescription",
    "pendingRemoteDescription", "currentRemoteDescription"))
_REMOTE_PARAMETERS = (_PC_PREFIX + "remoteDtls", _PC_PREFIX + "remoteIce")
MEMORY_PC_ATTRS = (*_DESCRIPTIONS, *_REMOTE_PARAMETERS, _PC_PREFIX + "transceivers")
"""Instance attributes of ``RTCPeerConnection`` replaced or read here (checked by the test)."""
MEMORY_TRANSCEIVER_ATTRS = ("_codecs", "_headerExtensions")
"""Instance attributes of ``RTCRtpTransceiver`` shared here (checked by the test)."""


def _shared(value: object, seen: list[object]) -> object:
    """``value``, or an equal one already kept (DTLS and ICE parameters: one per m-line in
    aiortc, identical under BUNDLE)."""
    for kept in seen:
        if kept == value:
            return kept
    seen.append(value)
    return value


def _mids(description: SessionDescription) -> list[tuple[str, str | None]]:
    return [(media.kind, media.rtp.muxId) for media in description.media]


def _skeleton(description: SessionDescription, seen: list[object],
              like: SessionDescription | None) -> SessionDescription:
    """What aiortc 1.16 reads again from an applied description of an offering connection
    whose m-lines all send: ``createOffer`` the kind and mid of each m-line (to keep them in
    order), ``addIceCandidate`` the mids and each m-line's candidate list,
    ``__validate_description`` the kinds and mids (of the offer being answered: always a fresh
    one); printing it, the ICE parameters. Codecs, feedback, extensions, SSRCs, candidates and
    directions go; the DTLS and ICE parameters are shared, and so are the m-lines of the offer
    and of its answer (the same kinds and mids, which aiortc checked), ``like``'s."""
    slim = SessionDescription()
    slim.type = description.type
    slim.origin = description.origin
    slim.group = description.group
    if like is not None and _mids(like) == _mids(description):
        slim.media = like.media
        return slim
    for media in description.media:
        bare = MediaDescription(media.kind, media.port, media.profile, media.fmt)
        bare.rtp.muxId = media.rtp.muxId
        bare.ice = _shared(media.ice, seen)  # type: ignore[assignment]
        bare.dtls = _shared(media.dtls, seen)  # type: ignore[assignment]
        slim.media.append(bare)
    return slim


def slim_descriptions(pc: RTCPeerConnection) -> int:
    """Once an answer to our offer is applied, keep of aiortc's parsed offer and answer only
    what it reads again, and share the equal remote DTLS and ICE parameters it keeps per
    m-line and the equal negotiated codec and header-extension lists of its transceivers; the
    number of m-lines slimmed (0: nothing changed).

    aiortc keeps both descriptions parsed for the connection's life (~7 KB per m-line with an
    aiortc answer; a subscriber in a room of 50 has ~98 m-lines), and each m-line's DTLS and
    ICE parameters of the answer (~1.4 KB), identical under BUNDLE, and each transceiver its
    own deep copy of the codecs agreed (~1.7 KB), equal on every m-line of one producer codec
    (aiortc and the SFU only read these lists: ``createOffer`` and ``setRemoteDescription``
    assign new ones; the captured sender parameters and ``match_codec`` read them). Only for a
    connection in the ``stable`` state whose transceivers do not receive: aiortc reads the
    remote m-line's SSRCs and RTCP parameters when it starts a receiver (``__remoteRtp``), so a
    connection with a receiving m-line is left alone. The next ``createOffer``,
    ``setLocalDescription`` and ``setRemoteDescription`` replace the descriptions with fresh
    full ones, so this runs after each negotiation; ``localDescription`` and
    ``remoteDescription`` then print only the skeleton.
    """
    if pc.signalingState != "stable" or not all(hasattr(pc, n) for n in MEMORY_PC_ATTRS):
        return 0
    transceivers = getattr(pc, _PC_PREFIX + "transceivers")
    if any(t.currentDirection in ("recvonly", "sendrecv") for t in transceivers):
        return 0
    if getattr(pc, _PC_PREFIX + "pendingRemoteDescription") is not None:
        return 0
    if not all(hasattr(t, n) for t in transceivers for n in MEMORY_TRANSCEIVER_ATTRS):
        return 0
    seen: list[object] = []
    for transceiver in transceivers:
        for name in MEMORY_TRANSCEIVER_ATTRS:
            setattr(transceiver, name, _shared(getattr(transceiver, name), seen))
    for name in _REMOTE_PARAMETERS:
        by_owner = getattr(pc, name)
        for owner, value in by_owner.items():
            by_owner[owner] = _shared(value, seen)
    slimmed = 0
    like = None
    for name in _DESCRIPTIONS:
        description = getattr(pc, name)
        if description is not None:
            like = _skeleton(description, seen, like)
            setattr(pc, name, like)
            slimmed = max(slimmed, len(description.media))
    return slimmed
