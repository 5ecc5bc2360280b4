// Audio-only (docs/protocol.md): the server's `bandwidth` state per direction, the notice that
// says so, and which simulcast encodings of our video sender are active (`publish_layers`, or
// none while the user chose audio only).
import { lang, t } from './i18n.js';

export const DEFAULT_THRESHOLD_BPS = 2_000_000;

const idle = () => ({ audio_only: false, reason: null, estimate_bps: null, threshold_bps: null });

/** {down, up}: what the server last said about each direction. */
export function initialBandwidth() {
  return { down: idle(), up: idle() };
}

/** Parse a `bandwidth` message into [direction, state], or null when it is malformed. */
export function parseBandwidth(msg) {
  if (msg.direction !== 'down' && msg.direction !== 'up') return null;
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return [msg.direction, {
    audio_only: !!msg.audio_only,
    reason: typeof msg.reason === 'string' ? msg.reason : null,
    estimate_bps: num(msg.estimate_bps),
    threshold_bps: num(msg.threshold_bps),
  }];
}

/** 2000000 -> "2", 2500000 -> "2.5" ("2,5" in Vietnamese): Mbps, at most one decimal. */
export function formatMbps(bps) {
  const value = Math.round((bps || DEFAULT_THRESHOLD_BPS) / 100_000) / 10;
  try {
    return value.toLocaleString(lang(), { maximumFractionDigits: 1 });
  } catch (_) {
    return String(value);
  }
}

/**
 * The notice text while audio-only is in force (one part per cause), or '' when it is not.
 * @param {{down: object, up: object}} bandwidth
 * @param {{userAudioOnly: boolean, videoOff: boolean, lastThreshold: number|null}} local
 */
export function bandwidthNotice(bandwidth, { userAudioOnly, videoOff, lastThreshold }) {
  const { down, up } = bandwidth;
  const parts = [];
  const byUser = userAudioOnly
    || (down.audio_only && down.reason === 'user') || (up.audio_only && up.reason === 'user');
  if (byUser) parts.push(t('audioOnlyUser'));
  if (down.audio_only && down.reason !== 'user') {
    parts.push(t('audioOnlyDown', { mbps: formatMbps(down.threshold_bps || lastThreshold) }));
  }
  if ((up.audio_only && up.reason !== 'user') || (videoOff && !byUser)) {
    parts.push(t('audioOnlyUp', { mbps: formatMbps(up.threshold_bps || lastThreshold) }));
  }
  return parts.join(' · ');
}

/**
 * The `active` flag of each encoding of our video sender. `setParameters` calls are queued (one
 * at a time); with no sender yet nothing happens, and `apply()` is called again once it exists.
 */
export class VideoLayers {
  /** @param {() => RTCRtpSender | null} getSender */
  constructor(getSender) {
    this.getSender = getSender;
    this.layers = null; // {video: bool, active: {rid: bool}} from the last `publish_layers`
    this.userOff = false; // audio only by the user's choice
    this.queue = Promise.resolve();
    this.closed = false;
  }

  /** The server told us to stop sending video (uplink below the threshold). */
  get videoOff() {
    return !!this.layers && !this.layers.video;
  }

  setLayers(msg) {
    const active = {};
    if (msg.active && typeof msg.active === 'object') {
      for (const [rid, on] of Object.entries(msg.active)) active[rid] = !!on;
    }
    this.layers = { video: msg.video !== false, active };
    return this.apply();
  }

  setUserOff(off) {
    this.userOff = !!off;
    return this.apply();
  }

  /** The `active` flags wanted now, for an encoding list (each {rid?}). */
  wanted(encodings) {
    const allOff = this.userOff || this.videoOff;
    return encodings.map((enc) => {
      if (allOff) return false;
      if (!enc.rid || !this.layers) return true;
      return this.layers.active[enc.rid] ?? true;
    });
  }

  apply() {
    this.queue = this.queue
      .then(() => this._apply())
      .catch((err) => console.warn('video sender: setParameters failed', err));
    return this.queue;
  }

  close() {
    this.closed = true;
  }

  async _apply() {
    const sender = this.closed ? null : this.getSender();
    if (!sender || !sender.track) return;
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) return;
    const want = this.wanted(params.encodings);
    let changed = false;
    params.encodings.forEach((enc, i) => {
      if (enc.active !== want[i]) {
        enc.active = want[i];
        changed = true;
      }
    });
    if (changed) await sender.setParameters(params);
  }
}
