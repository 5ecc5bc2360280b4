// Rejoining through another node of a cluster when ours dies (issue 14; the server side is
// signaling/cluster/directory.py). A page stays on the node that served it, but its WebSocket
// may live elsewhere (a `wrong-node` redirect). The server lists the cluster's other live nodes
// in `joined.nodes` and again in a `cluster` message when that list changes; web/reconnect.js
// then tries, in each round: the node the call was on, the other nodes in the server's order,
// and the page's own node last (following `wrong-node` redirects as on any join).
//
// Hostile input: only the lists that came over this call's signaling are accepted (never
// anything from the URL, storage or another page), and each address must be a plain http(s)
// base URL: a host, no credentials, no path, query or fragment; at most MAX_NODES of them.
import { addStrings } from './i18n.js';

addStrings({
  vi: { reconnectingOther: 'Mất kết nối, đang kết nối lại qua máy chủ khác ({host})…' },
  en: { reconnectingOther: 'Connection lost, reconnecting through another server ({host})…' },
});

export const MAX_NODES = 32;
const MAX_ADDRESS_CHARS = 256;
/** Waits between reconnection rounds in a cluster: a dead node's rooms move once
 * it has missed 3 s of heartbeats, so the first rounds come every second, then back off. */
export const CLUSTER_BACKOFF_MS = [500, 1000, 1000, 1000, 2000, 4000, 8000];

/** `value` as `http(s)://host[:port]`, or null when it is anything else. */
export function nodeOrigin(value) {
  if (typeof value !== 'string' || !value || value.length > MAX_ADDRESS_CHARS) return null;
  if (/[\s\\<>"'`]/.test(value)) return null;
  let url;
  try {
    url = new URL(value);
  } catch (_) {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!url.hostname || url.username || url.password || value.includes('@')) return null;
  if (url.pathname !== '/' || url.search || url.hash || value.includes('?') || value.includes('#')) return null;
  return url.origin;
}

/** The WebSocket URL of a node's origin. */
export function wsUrl(origin) {
  const url = new URL(origin);
  return (url.protocol === 'https:' ? 'wss' : 'ws') + '://' + url.host + '/ws';
}

/** The http(s) origin of a WebSocket URL (the node a call's socket is on). */
export function originOfWs(ws) {
  try {
    const url = new URL(ws);
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') return null;
    return nodeOrigin((url.protocol === 'wss:' ? 'https://' : 'http://') + url.host);
  } catch (_) {
    return null;
  }
}

/** The nodes a call may rejoin through. */
export class NodeList {
  constructor(page = location.origin) {
    this.page = nodeOrigin(page); // the node that served this page
    this.current = this.page; // the node the call is (or was last) joined at
    this.others = []; // the server's list: the cluster's other live nodes
    this.clustered = false; // a server sent a list (even empty): we are in a cluster
  }

  /** The call joined through the WebSocket at `ws` (after any redirect). */
  joinedAt(ws) {
    this.current = originOfWs(ws) || this.page;
  }

  /** A list from the server (`joined.nodes`, `cluster.nodes`): keep its valid addresses. */
  accept(list) {
    if (!Array.isArray(list)) return false;
    this.clustered = true;
    const seen = new Set();
    for (const value of list.slice(0, MAX_NODES)) {
      const origin = nodeOrigin(value);
      if (origin && origin !== this.current) seen.add(origin);
    }
    this.others = [...seen];
    return true;
  }

  /** Where to try, in order: this call's node, the others, the page's node. */
  order() {
    const out = [];
    for (const node of [this.current, ...this.others, this.page]) {
      if (node && !out.includes(node)) out.push(node);
    }
    return out.slice(0, MAX_NODES + 2);
  }
}

/**
 * One reconnection round: `attempt(node)` for each node in `order` until one gives an outcome
 * other than 'error' (could not reach it, or it could not place the room yet): 'joined', or a
 * decision of the service ('refused', 'left') that another node would repeat.
 */
export async function rejoinAcross(order, attempt) {
  let outcome = 'error';
  for (const node of order) {
    outcome = await attempt(node);
    if (outcome !== 'error') return outcome;
  }
  return outcome;
}
