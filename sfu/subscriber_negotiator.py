"""The offer/answer side of a subscriber connection (the server offers, the client answers).

One sendonly m-line (a ``Slot``) per consumed track. An m-line whose producer went away is made
inactive and reused by the next track of the same kind (aiortc never recycles mids, and its SDP
grows ~1.4 KB per m-line). Offers go out one at a time from one task: changes that arrive
meanwhile are folded into the next offer. Transport-cc, which aiortc does not know, is added to
the offer text and read back from the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.sdp import SessionDescription

from sfu import aiortc_hooks
from sfu.consumer import Consumer
from sfu.events import AnswerRefused, EventSink, TrackDescription
from sfu.negotiation import SUBSCRIBER_TWCC_EXT_ID, URI_TWCC
from sfu.types import Codec
from sfu.wire.sdp_munging import add_transport_cc_to_offer, negotiated_extension_id

logger = logging.getLogger(__name__)

__all__ = ["SendOffer", "Slot", "SubscriberNegotiator", "check_answer", "describe_error",
           "offered_codecs"]

ANSWER_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 15.0

SendOffer = Callable[[str, dict[str, TrackDescription]], Awaitable[None]]


def check_answer(sdp: str) -> None:
    """Refuse what cannot be an answer before it is handed to the negotiation (which then
    keeps waiting for a usable one). aiortc's parser raises all sorts (AssertionError, KeyError,
    ValueError...) on bad text: callers catch broadly."""
    if not sdp.startswith("v="):
        raise ValueError("SDP must start with v=0")
    description = SessionDescription.parse(sdp)
    if not description.media:
        raise ValueError("SDP answers no media section (m=)")


def describe_error(exc: BaseException) -> str:
    """One line naming the problem, also for aiortc's bare AssertionError/KeyError."""
    text = str(exc)
    if not text or isinstance(exc, AssertionError | KeyError | IndexError | AttributeError):
        text = f"{type(exc).__name__}{': ' + text if text else ''} (malformed or unsupported SDP)"
    return text[:200]


def offered_codecs(kind: str, codec: Codec | None) -> list[RTCRtpCodecCapability]:
    """What an m-line offers: only the codec its producer sends (every profile of it, and RTX
    for video). Every codec aiortc knows was 6 for video and 4 for audio, each parsed and kept
    twice per m-line (our offer, the answer) and copied once more per transceiver: ~10 KB per
    m-line, one per publisher, for codecs the SFU could never forward there. A reused m-line
    offers the next producer's codec. Empty (aiortc's defaults) while the codec is unknown."""
    if codec is None:
        return []
    mime = codec.mime_type.lower()
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == mime]
    if not chosen:
        return []
    return chosen + [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]


@dataclass(eq=False, slots=True)
class Slot:
    """One sendonly m-line of the subscriber connection (one per publisher's track in every
    subscriber: slots, no instance dict)."""

    transceiver: RTCRtpTransceiver
    kind: str
    consumer: Consumer | None = None
    previous: Consumer | None = None
    parameters: RTCRtpSendParameters | None = None
    stream_id: str = field(default="")
    # A last-N video slot (sfu/video_slots.py): kept sendonly for the pool, never reused by
    # another kind of track; ``stream_id`` names the participant it shows.
    pooled: bool = False



def _does_nothing(*_args: object) -> None:
    pass


async def _offers_nothing(*_args: object) -> None:
    pass


class SubscriberNegotiator:
    def __init__(
        self,
        participant_id: str,
        pc: RTCPeerConnection,
        send_offer: SendOffer,
        *,
        configure: Callable[[Slot], None],
        on_first_offer: Callable[[RTCRtpTransceiver], None],
        on_transport_cc: Callable[[int], None],
        configure_ice: Callable[[RTCPeerConnection], None] = lambda pc: None,
        notify: EventSink,
        transport_cc: bool = True,
    ) -> None:
        self.participant_id = participant_id
        self.pc = pc
        self.slots: list[Slot] = []
        self.negotiations = 0
        self.bad_answers = 0
        self.twcc_id = 0
        self._send_offer = send_offer
        self._configure = configure
        self._on_first_offer = on_first_offer
        self._on_transport_cc = on_transport_cc
        self._configure_ice = configure_ice
        self._notify = notify
        self._offer_transport_cc = transport_cc
        self._offered = False
        self._dirty = asyncio.Event()
        self._answer: asyncio.Future[str] | None = None
        # Set once an answer is applied: the client's trickled candidates must wait for it.
        self._described = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- slots -------------------------------------------------------------------------------------

    def acquire(self, kind: str) -> Slot:
        """A sendonly m-line of ``kind``: an inactive one reused, else a new transceiver."""
        slot = next((s for s in self.slots
                     if s.consumer is None and s.kind == kind and not s.pooled), None)
        if slot is None:
            slot = Slot(self.pc.addTransceiver(kind, direction="sendonly"), kind)
            self.slots.append(slot)

            def on_parameters(parameters: RTCRtpSendParameters) -> None:
                slot.parameters = parameters
                self._configure(slot)

            aiortc_hooks.capture_sender(slot.transceiver.sender, on_parameters)
            aiortc_hooks.slim_sender(slot.transceiver.sender)
            # A sendonly m-line's receiver never receives: its estimator, jitter buffer and
            # decoder queue were ~50 KB per video m-line, one per publisher in the room.
            aiortc_hooks.slim_receiver(slot.transceiver.receiver, never_receives=True)
        else:
            slot.transceiver.direction = "sendonly"
        return slot

    def assign(self, slot: Slot, consumer: Consumer, stream_id: str) -> None:
        slot.consumer = consumer
        slot.stream_id = stream_id
        slot.transceiver.setCodecPreferences(offered_codecs(slot.kind, consumer.producer.codec))
        aiortc_hooks.set_stream_id(slot.transceiver.sender, stream_id)
        self.changed()

    def release(self, consumer: Consumer) -> None:
        """The consumer's m-line goes inactive, kept for the next track of its kind."""
        for slot in self.slots:
            if slot.consumer is consumer:
                slot.consumer = None
                slot.previous = consumer
                slot.transceiver.direction = "inactive"
        self.changed()

    def changed(self) -> None:
        """Something to offer: the negotiation task folds every change into its next offer."""
        self._dirty.set()

    def track_map(self) -> dict[str, TrackDescription]:
        return {
            slot.transceiver.mid: TrackDescription(
                participant_id=slot.stream_id or slot.consumer.producer.participant_id,
                kind=slot.kind,
                stream_id=slot.stream_id,
                source=slot.consumer.producer.source,
            )
            for slot in self.slots
            if slot.consumer is not None and slot.transceiver.mid is not None
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._negotiate_forever())

    def dismantle(self) -> None:
        """After ``close`` and the connection's: forget the slots and the callbacks into the
        subscriber (cycles through its bound methods and through each slot's sender hook), so
        reference counting frees them (sfu/gctune.py)."""
        for slot in self.slots:
            slot.consumer = slot.previous = None
        self.slots.clear()
        self._configure = self._on_first_offer = self._on_transport_cc = _does_nothing
        self._send_offer = _offers_nothing
        self._notify = _does_nothing

    async def close(self) -> None:
        self._closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            if task is not asyncio.current_task():  # closed from its own offer's callback
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- offer/answer ------------------------------------------------------------------------------

    async def _negotiate_forever(self) -> None:
        while not self._closed:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._negotiate_once()
            except asyncio.CancelledError:
                raise
            except TimeoutError as exc:
                # No answer in time (a client on a starved machine, in a room of 50 joining at
                # once): a fresh offer, or its tracks would wait for the next change, maybe
                # forever. At most one per ANSWER_TIMEOUT_S.
                logger.warning("subscriber %s: no answer in time (%r): offering again",
                               self.participant_id, exc)
                self._dirty.set()
            except (ConnectionError, InvalidStateError) as exc:
                # The client went quiet or away mid-offer: retried on the next change.
                logger.warning("subscriber %s: negotiation abandoned: %r", self.participant_id,
                               exc)
            except Exception:
                logger.exception("subscriber %s: negotiation failed", self.participant_id)

    async def _negotiate_once(self) -> None:
        if not self.slots:
            return
        if not self._offered:
            self._offered = True
            self._on_first_offer(self.slots[0].transceiver)
        self._configure_ice(self.pc)
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        # The offer's text (~95 KB in a room of 50) is not needed again: not held for up to
        # ANSWER_TIMEOUT_S per subscriber while a join wave waits for answers. (Its text cannot
        # replace localDescription.sdp below: only the latter carries the gathered candidates.)
        del offer
        for slot in self.slots:  # mids exist only now
            if slot.consumer is not None:
                slot.consumer.mid = slot.transceiver.mid or ""
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self.negotiations += 1
        sdp = self.pc.localDescription.sdp
        if self._offer_transport_cc:
            # aiortc knows nothing of transport-cc: offered in the text only; we do its work.
            sdp = add_transport_cc_to_offer(sdp, SUBSCRIBER_TWCC_EXT_ID)
        await self._send_offer(sdp, self.track_map())
        try:
            sdp = await asyncio.wait_for(self._answer, ANSWER_TIMEOUT_S)
        finally:
            self._answer = None
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError, but also AttributeError etc.
            self._refuse_answer(exc)
            return
        # aiortc keeps our offer and the answer parsed (~7 KB per m-line): only a skeleton stays.
        aiortc_hooks.slim_descriptions(self.pc)
        self._described.set()
        first_mid = next((s.transceiver.mid for s in self.slots if s.transceiver.mid), None)
        if self._offer_transport_cc and first_mid is not None and not self.twcc_id:
            # Once agreed it stays: later answers (the whole SDP, ~100 sections in a room of
            # 50) are not searched again.
            twcc_id = negotiated_extension_id(sdp, first_mid, URI_TWCC) or 0
            if twcc_id:
                self.twcc_id = twcc_id
                self._on_transport_cc(twcc_id)
        # aiortc starts DTLS once per transport; a second offer racing the first handshake
        # would start it twice, so the next offer waits for the connection.
        await self._wait_connected()
        for slot in self.slots:
            self._configure(slot)

    def _refuse_answer(self, exc: BaseException) -> None:
        """A client's answer aiortc cannot apply: the client hears why (``bad-sdp``) and gets a
        fresh offer to answer; the log gets one line per subscriber, not a traceback per try."""
        self.bad_answers += 1
        reason = describe_error(exc)
        if self.bad_answers == 1:
            logger.warning("subscriber %s: answer refused (%s); later ones are only counted",
                           self.participant_id, reason)
        self._notify(AnswerRefused(reason))
        self._dirty.set()

    async def _wait_connected(self) -> None:
        if self.pc.connectionState == "connected":
            return
        done = asyncio.Event()

        def on_change() -> None:
            if self.pc.connectionState in ("connected", "failed", "closed"):
                done.set()

        self.pc.on("connectionstatechange", on_change)
        try:
            await asyncio.wait_for(done.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            logger.warning("subscriber %s: connection not established", self.participant_id)
        finally:
            self.pc.remove_listener("connectionstatechange", on_change)

    async def wait_described(self, timeout: float) -> bool:
        """Wait (bounded) until an answer has been applied; ICE candidates need one."""
        if not self._described.is_set():
            if not self.has_pending_offer():
                return False  # no offer out: nothing to wait for
            try:
                await asyncio.wait_for(self._described.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def has_pending_offer(self) -> bool:
        return self._answer is not None and not self._answer.done()

    def set_answer(self, sdp: str) -> bool:
        """The client's answer; False when no offer is outstanding."""
        answer = self._answer
        if answer is None or answer.done():
            return False
        answer.set_result(sdp)
        return True
