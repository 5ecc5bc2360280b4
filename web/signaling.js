// WebSocket JSON signaling client (protocol: docs/protocol.md).
// `request()` returns a promise per request, settled by the matching reply type, or rejected by
// an `error` whose `ref` names the request type, by a timeout, or by the socket closing.
// Every received message is also passed to the callbacks registered with `on(type, fn)`.
import { nodeOrigin, wsUrl } from './failover.js';

export class SignalingError extends Error {
  constructor(code, message, ref, details = {}) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.ref = ref;
    this.details = details; // the whole `error` message: `limit`, `room`, `retry_after`, ...
  }
}

/** Types of the messages sent (all connections), the last SEND_LOG_MAX; for tests. */
export const sendLog = [];
const SEND_LOG_MAX = 200;

export function defaultUrl() {
  return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';
}

export class Signaling {
  constructor(url = defaultUrl()) {
    this.url = url;
    this.ws = null;
    this.handlers = new Map(); // type -> [fn]
    this.pending = []; // {ref, replyType, match, resolve, reject, timer}
    this.closed = false;
    this.nextPingId = 1;
    this.keepaliveTimer = null;
  }

  /** Open the socket. Resolves when open; rejects on error, close or timeout. */
  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new SignalingError('timeout', `could not connect to ${this.url}`));
        try { ws.close(); } catch (_) { /* ignore */ }
      }, timeoutMs);
      ws.onopen = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new SignalingError('socket', `could not connect to ${this.url}`));
      };
      ws.onmessage = (ev) => { if (ws === this.ws) this._onMessage(ev); };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          reject(new SignalingError('socket', `connection to ${this.url} closed (${ev.code})`));
        }
        if (ws === this.ws) this._onClose(ev); // not a socket we left for another node
      };
    });
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(msg) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(msg));
    sendLog.push(msg.type);
    if (sendLog.length > SEND_LOG_MAX) sendLog.splice(0, sendLog.length - SEND_LOG_MAX);
    return true;
  }

  /**
   * Send `msg` and wait for a reply of type `replyType` (or one of a list of types; optionally
   * satisfying `match`).
   * An `error` with `ref === msg.type` rejects the oldest pending request of that type.
   */
  request(msg, replyType, { timeoutMs = 10000, match = null } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new SignalingError('socket', 'not connected', msg.type));
        return;
      }
      const entry = { ref: msg.type, replyType, match, resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this._removePending(entry);
        reject(new SignalingError('timeout', `no ${[].concat(replyType).join('/')} within ${timeoutMs} ms`, msg.type));
      }, timeoutMs);
      this.pending.push(entry);
      this.send(msg);
    });
  }

  /**
   * `request` for `join`, following a cluster's redirect: a room runs on one node, and a join
   * that reached another is refused with `wrong-node` and the room node's `address`; the
   * socket moves there (at most `maxRedirects` times) and the join is sent again.
   */
  async requestJoin(msg, replyType, options = {}, maxRedirects = 2) {
    for (let hop = 0; ; hop++) {
      try {
        return await this.request(msg, replyType, options);
      } catch (err) {
        const address = err.details && err.details.address;
        if (err.code !== 'wrong-node' || hop >= maxRedirects) throw err;
        const target = nodeOrigin(address); // a plain http(s) base URL, or no redirect
        if (!target || (this.canReach && !this.canReach(target))) throw err;
        const old = this.ws;
        this.url = wsUrl(target);
        this.ws = null;
        try { old.close(1000); } catch (_) { /* ignore */ }
        await this.connect();
      }
    }
  }

  ping(timeoutMs = 10000) {
    const id = this.nextPingId++;
    return this.request({ type: 'ping', id }, 'pong', { timeoutMs, match: (m) => m.id === id });
  }

  /** Ping every `intervalMs` so idle proxies keep the socket open. */
  startKeepalive(intervalMs = 25000) {
    this.stopKeepalive();
    this.keepaliveTimer = setInterval(() => {
      if (this.isOpen) this.ping().catch(() => {});
    }, intervalMs);
  }

  stopKeepalive() {
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  close() {
    this.closed = true;
    this.stopKeepalive();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      try { this.ws.close(1000); } catch (_) { /* ignore */ }
    }
  }

  _removePending(entry) {
    const i = this.pending.indexOf(entry);
    if (i >= 0) this.pending.splice(i, 1);
    clearTimeout(entry.timer);
  }

  _onMessage(ev) {
    if (typeof ev.data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      console.warn('signaling: ignoring a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (msg.type === 'error') {
      const entry = this.pending.find((p) => msg.ref && p.ref === msg.ref);
      if (entry) {
        this._removePending(entry);
        entry.reject(new SignalingError(msg.code, msg.message, msg.ref, msg));
      }
    } else {
      const entry = this.pending.find((p) => [].concat(p.replyType).includes(msg.type)
        && (!p.match || p.match(msg)));
      if (entry) {
        this._removePending(entry);
        entry.resolve(msg);
      }
    }
    this._emit(msg.type, msg);
  }

  _onClose(ev) {
    this.stopKeepalive();
    const pending = this.pending.splice(0);
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(new SignalingError('socket', `connection closed (${ev.code})`, p.ref));
    }
    this._emit('close', { code: ev.code, reason: ev.reason, expected: this.closed });
  }

  _emit(type, msg) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(msg);
      } catch (err) {
        console.error(`signaling: handler for ${type} failed`, err);
      }
    }
  }
}
