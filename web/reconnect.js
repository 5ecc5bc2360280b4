// Automatic reconnection, with no user action (signaling/resume.py on the server):
// - a media connection that goes 'disconnected' (an outage of a few seconds) usually comes back
//   by itself (ICE consent); we say "reconnecting" meanwhile and time it;
// - a socket that drops, or a media connection that 'failed' (a network change: new address),
//   ends the call's connections and joins again with the seat's resume token: the same
//   participant id and seat, so the others see "reconnecting", not a leave and a join. If the
//   seat is gone (held too long) the join falls back to the usual credentials with take-over.
// Attempts back off (0.5 s doubling to 8 s) for at most RETRY_FOR_MS; then the usual error.
// Every recovery is recorded in `window.diemcau.reconnects` as {how, ms}.
import { addStrings, t } from './i18n.js';

addStrings({
  vi: {
    reconnecting: 'Mất kết nối, đang kết nối lại…',
    reconnectingAttempt: 'Mất kết nối, đang kết nối lại (lần {n})…',
    reconnected: 'Đã kết nối lại sau {seconds} giây.',
    peerReconnecting: 'Đang kết nối lại…',
  },
  en: {
    reconnecting: 'Connection lost, reconnecting…',
    reconnectingAttempt: 'Connection lost, reconnecting (attempt {n})…',
    reconnected: 'Reconnected after {seconds} s.',
    peerReconnecting: 'Reconnecting…',
  },
});

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const RETRY_FOR_MS = 90_000;
const DISCONNECTED_MS = 5000; // 'disconnected' this long (ICE did not recover): rejoin
const CONNECT_TIMEOUT_MS = 15_000;

export class Reconnector {
  /**
   * @param {object} opts
   * @param {(resumeToken: string|null) => Promise<string>} opts.rejoin joins again; resolves
   *   with the final state ('joined', 'error', 'left', ...)
   * @param {(text: string) => void} opts.notify shows (or with '' hides) the status line
   * @param {object} opts.hook window.diemcau (reconnects, peerStates are kept there)
   */
  constructor({ rejoin, notify, hook, isLive = () => true, giveUp = () => {}, ping = null,
    backoff = () => BACKOFF_MS }) {
    this.backoff = backoff; // () => the waits between attempts (a cluster's: web/failover.js)
    this.ping = ping; // () => Promise: a signaling round trip (is the socket alive too?)
    this.rejoin = rejoin;
    this.giveUp = giveUp; // every attempt failed (or was refused): show the usual error
    this.isLive = isLive; // still in a call (not left on purpose)
    this.connectTimer = null;
    this.notify = notify;
    this.hook = hook;
    hook.reconnects = hook.reconnects || [];
    hook.peerStates = hook.peerStates || {};
    this.resumeToken = null;
    this.lostAt = null; // performance.now() when the connection was lost
    this.running = false;
    this.mode = null; // 'ice' (waiting for ICE to recover) or 'rejoin'
    this.iceTimer = null;
    this.enabled = true;
    window.addEventListener('online', () => this._onOnline());
  }

  /** A call joined: remember its resume token; finish timing a rejoin. */
  joined(msg) {
    this.resumeToken = msg.resume_token || null;
  }

  /** Media flows again after a rejoin (the publisher or subscriber connected). */
  connected(how = 'rejoin') {
    clearTimeout(this.iceTimer);
    this.iceTimer = null;
    if (this.lostAt === null) return;
    const ms = Math.round(performance.now() - this.lostAt);
    this.lostAt = null;
    this.mode = null;
    this.hook.reconnects.push({ how, ms, at: Date.now() });
    this.notify(t('reconnected', { seconds: (ms / 1000).toFixed(1) }));
    setTimeout(() => this.notify(''), 4000);
  }

  /** The call ended on purpose (leave, removed, ended): nothing to recover. */
  stop() {
    this.resumeToken = null;
    this.lostAt = null;
    clearTimeout(this.iceTimer);
    clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  /**
   * A peer connection's state. Returns true when we handle it (the caller shows nothing).
   * `live` says whether this call is still the current one and joined.
   */
  onPcState(which, state, live) {
    if (!this.enabled) return false;
    if (state === 'connected') { // media flows again (after an outage, or on the new call)
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
      if (this.lostAt === null) return false;
      this.connected(this.mode || 'ice');
      return true;
    }
    if (state === 'connecting' && !this.connectTimer) {
      // A connection that never gets there (e.g. our address changed while joining) is
      // retried like a failed one.
      this.connectTimer = setTimeout(() => {
        this.connectTimer = null;
        if (this.isLive()) this.lost('connect-timeout');
      }, CONNECT_TIMEOUT_MS);
      return false;
    }
    if (!live) return false;
    if (state === 'disconnected') {
      if (this.lostAt === null) {
        this.lostAt = performance.now();
        this.mode = 'ice';
      }
      this.notify(t('reconnecting'));
      clearTimeout(this.iceTimer);
      this.iceTimer = setTimeout(() => this.lost('ice-timeout'), DISCONNECTED_MS);
      // Media stopped; if the socket does not answer either, our network is gone or changed:
      // rejoin at once instead of waiting for ICE (an outage that ends meanwhile is let be).
      const lostAt = this.lostAt;
      if (this.ping) {
        this.ping().catch(() => {
          if (this.lostAt === lostAt && this.mode === 'ice' && this.isLive()) this.lost('socket-silent');
        });
      }
      return true;
    }
    if (state === 'failed') {
      this.lost(`${which}-failed`);
      return true;
    }
    return false;
  }

  /** The socket closed unexpectedly, or media failed: rejoin with backoff. True if handled. */
  lost(reason) {
    if (!this.enabled) return false;
    if (this.running) { // lost again while an attempt runs (its node died meanwhile): go on
      this.lostAgain = true;
      return true;
    }
    if (this.lostAt === null) this.lostAt = performance.now();
    this.mode = 'rejoin';
    this.running = true;
    this.hook.lastLoss = reason;
    this._loop();
    return true;
  }

  async _loop() {
    const started = performance.now();
    for (let attempt = 0; performance.now() - started < RETRY_FOR_MS; attempt++) {
      this.notify(attempt ? t('reconnectingAttempt', { n: attempt + 1 }) : t('reconnecting'));
      const schedule = this.backoff() || BACKOFF_MS;
      const wait = schedule[Math.min(attempt, schedule.length - 1)];
      await new Promise((resolve) => { setTimeout(resolve, attempt ? wait : 200); });
      let outcome;
      this.lostAgain = false;
      try {
        outcome = await this.rejoin(this.resumeToken, attempt);
        if (outcome === 'joined' && this.lostAgain) outcome = 'error'; // joined, then lost
      } catch (err) {
        outcome = 'error';
        console.warn('rejoin failed', err);
      }
      if (outcome === 'joined' || outcome === 'moving') { // 'moving': the page goes elsewhere
        this.running = false;
        return; // `connected()` finishes the timing when media flows
      }
      if (outcome === 'left' || outcome === 'refused') break; // the host decided, or refused
    }
    this.running = false;
    this.lostAt = null;
    this.notify('');
    this.hook.reconnectGaveUp = true;
    this.giveUp();
  }

  _onOnline() {
    // Back online after an outage: try at once rather than waiting for the next backoff.
    if (this.lostAt !== null && !this.running) this.lost('online');
  }
}

/** `participant_state` from the server: mark a peer's tile "reconnecting" (or clear it). */
export function showPeerState(hook, msg) {
  if (!msg || typeof msg.participant_id !== 'string') return;
  hook.peerStates = hook.peerStates || {};
  hook.peerStates[msg.participant_id] = msg.state;
  const tile = document.querySelector(`.tile[data-participant-id="${CSS.escape(msg.participant_id)}"]`);
  if (!tile) return;
  const reconnecting = msg.state === 'reconnecting';
  tile.classList.toggle('reconnecting', reconnecting);
  let badge = tile.querySelector('.reconnecting-badge');
  if (reconnecting && !badge) {
    badge = document.createElement('div');
    badge.className = 'reconnecting-badge';
    badge.setAttribute('role', 'status');
    tile.append(badge);
  }
  if (badge) {
    badge.textContent = t('peerReconnecting');
    badge.hidden = !reconnecting;
  }
}
