// The two RTCPeerConnections of a participant (docs/protocol.md):
// - publisher: we offer our audio and simulcast video (q/h/f), the server answers;
// - subscriber: the server offers one m-line per remote track, we answer. Offers are applied one
//   at a time, in order; after each one the mid -> participant mapping is rebuilt from
//   `pc.getTransceivers()` (never from track ids: the server reuses m-lines).

export const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 1500000 },
];

function candidateJson(candidate) {
  if (!candidate || !candidate.candidate) return null; // end of candidates
  return {
    candidate: candidate.candidate,
    sdpMid: candidate.sdpMid,
    sdpMLineIndex: candidate.sdpMLineIndex,
  };
}

/** Queues ICE candidates until `open()`, then sends them (and later ones) at once. */
class CandidateTrickle {
  constructor(signaling, target) {
    this.signaling = signaling;
    this.target = target;
    this.queue = [];
    this.ready = false;
  }

  add(candidate) {
    const msg = { type: 'ice', target: this.target, candidate: candidateJson(candidate) };
    if (this.ready) this.signaling.send(msg);
    else this.queue.push(msg);
  }

  open() {
    if (this.ready) return;
    this.ready = true;
    for (const msg of this.queue.splice(0)) this.signaling.send(msg);
  }
}

export class Session {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {object} opts
   * @param {(entries: Array<{mid, participant_id, kind, stream_id, track}>) => void} opts.onTracks
   * @param {(which: string, state: string) => void} [opts.onConnectionState]
   * @param {(err: Error, context: string) => void} [opts.onError]
   */
  constructor(signaling, { onTracks, onConnectionState = () => {}, onError = () => {} }) {
    this.signaling = signaling;
    this.onTracks = onTracks;
    this.onConnectionState = onConnectionState;
    this.onError = onError;
    this.iceServers = [];
    this.publisher = null;
    this.subscriber = null;
    this.closed = false;
    this.tracks = {}; // mid -> {participant_id, kind, stream_id} from the last offer
    this._readyResolve = null;
    this._ready = new Promise((resolve) => { this._readyResolve = resolve; });
    this._subQueue = Promise.resolve();
    this._pubQueue = Promise.resolve();
    this._subTrickle = new CandidateTrickle(signaling, 'subscriber');
    this._pubTrickle = null;
    this.publishFields = null; // () => extra `publish` fields (screen_mids: web/screenshare.js)
  }

  /** Call once `joined` has arrived; offers received before are held until then. */
  start(iceServers = []) {
    this.iceServers = Array.isArray(iceServers) ? iceServers : [];
    this.subscriber = this._createPc('subscriber', this._subTrickle);
    this._readyResolve();
  }

  /** Queue a server `subscribe_offer`; offers are handled strictly one after another. */
  handleSubscribeOffer(msg) {
    this._subQueue = this._subQueue
      .then(() => this._ready)
      .then(() => this._applySubscribeOffer(msg))
      .catch((err) => { if (!this.closed) this.onError(err, 'subscribe'); });
    return this._subQueue;
  }

  async _applySubscribeOffer(msg) {
    const pc = this.subscriber;
    if (this.closed || !pc) return;
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (this.closed) return;
    this.signaling.send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
    this._subTrickle.open();
    this.tracks = msg.tracks && typeof msg.tracks === 'object' ? msg.tracks : {};
    this._emitTracks();
  }

  /**
   * A server `slot`: the pooled video m-line `mid` shows another participant from now on
   * (last-N video slots, docs/protocol.md). Queued behind any offer received before it, whose
   * track map it then corrects; the track moves to that participant's tile.
   */
  handleSlot(msg) {
    this._subQueue = this._subQueue
      .then(() => this._ready)
      .then(() => {
        if (this.closed || typeof msg.mid !== 'string' || typeof msg.participant_id !== 'string') return;
        this.tracks = {
          ...this.tracks,
          [msg.mid]: { participant_id: msg.participant_id, kind: 'video',
            stream_id: msg.participant_id, source: msg.source || 'camera' },
        };
        this._emitTracks();
      })
      .catch((err) => { if (!this.closed) this.onError(err, 'slot'); });
    return this._subQueue;
  }

  /** Walk the transceivers: every listed mid gives (participant, kind, track). */
  _emitTracks() {
    const entries = [];
    if (this.subscriber) {
      for (const tr of this.subscriber.getTransceivers()) {
        const info = tr.mid != null ? this.tracks[tr.mid] : undefined;
        if (!info || !tr.receiver || !tr.receiver.track) continue;
        entries.push({
          mid: tr.mid,
          participant_id: info.participant_id,
          kind: info.kind || tr.receiver.track.kind,
          stream_id: info.stream_id,
          source: info.source || 'camera', // 'screen': web/screenshare.js shows it large
          track: tr.receiver.track,
        });
      }
    }
    this.onTracks(entries);
  }

  /** Create the publisher connection for `stream` and negotiate it. */
  async publish(stream) {
    await this._ready;
    if (this.closed) return;
    const audio = stream.getAudioTracks()[0];
    const video = stream.getVideoTracks()[0];
    if (!audio && !video) return;
    this._pubTrickle = new CandidateTrickle(this.signaling, 'publisher');
    const pc = this._createPc('publisher', this._pubTrickle);
    this.publisher = pc;
    if (audio) pc.addTransceiver(audio, { direction: 'sendonly' });
    if (video) {
      try {
        pc.addTransceiver(video, { direction: 'sendonly', sendEncodings: SIMULCAST_ENCODINGS });
      } catch (err) {
        console.warn('simulcast refused by this browser, sending one layer', err);
        pc.addTransceiver(video, { direction: 'sendonly' });
      }
    }
    await this.negotiatePublisher();
  }

  /** The sender of our video (null before `publish`, or without a camera). */
  videoSender() {
    const pc = this.publisher;
    if (!pc || this.closed) return null;
    const tr = pc.getTransceivers().find((x) => x.receiver && x.receiver.track
      && x.receiver.track.kind === 'video' && !x.stopped);
    return tr ? tr.sender : null;
  }

  /** (Re-)offer on the publisher connection; serialised. */
  negotiatePublisher() {
    this._pubQueue = this._pubQueue.then(async () => {
      const pc = this.publisher;
      if (this.closed || !pc) return;
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const reply = await this.signaling.request(
        { type: 'publish', sdp: pc.localDescription.sdp, ...(this.publishFields ? this.publishFields() : {}) },
        'publish_answer', { timeoutMs: 15000 });
      if (this.closed) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      this._pubTrickle.open();
    });
    const done = this._pubQueue;
    this._pubQueue = done.catch(() => {}); // a failed round must not block later ones
    return done;
  }

  _createPc(which, trickle) {
    // `?relay=1`: relayed candidates only (TURN), as on a network that allows nothing else.
    const relay = new URLSearchParams(location.search).get('relay') === '1';
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle', iceServers: this.iceServers,
      iceTransportPolicy: relay ? 'relay' : 'all',
    });
    pc.onicecandidate = (ev) => {
      if (!this.closed) trickle.add(ev.candidate);
    };
    pc.onconnectionstatechange = () => {
      if (!this.closed) this.onConnectionState(which, pc.connectionState);
    };
    return pc;
  }

  close() {
    this.closed = true;
    this._readyResolve();
    for (const pc of [this.publisher, this.subscriber]) {
      if (!pc) continue;
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      try { pc.close(); } catch (_) { /* ignore */ }
    }
  }
}

/**
 * Ask for microphone + 1280x720 camera; fall back to one of them when the other is missing.
 * Never throws: returns {stream: MediaStream|null, missing: null|'audio'|'video'|'all', reason}.
 */
export async function getLocalMedia() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return { stream: null, missing: 'all', reason: 'getUserMedia' };
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  let first;
  try {
    return { stream: await md.getUserMedia({ audio: true, video }), missing: null };
  } catch (err) {
    first = err;
  }
  // A refusal covers both devices: do not prompt again.
  if (!['NotAllowedError', 'SecurityError'].includes(first.name)) {
    try {
      return { stream: await md.getUserMedia({ audio: true }), missing: 'video' };
    } catch (_) { /* try video alone */ }
    try {
      return { stream: await md.getUserMedia({ video }), missing: 'audio' };
    } catch (_) { /* nothing usable */ }
  }
  return { stream: null, missing: 'all', reason: first.name || String(first) };
}
